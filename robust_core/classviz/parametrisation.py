"""Where the image starts: a given picture (a drawn digit, a test image) or noise, one per target."""
from __future__ import annotations

import torch

STARTS = ("image", "uniform", "gaussian", "zeros")


def start_images(kind: str, n: int, shape: tuple[int, int, int], *, image: torch.Tensor | None = None, seed: int = 0,
                 device=None) -> torch.Tensor:
    """n starting images (n, C, H, W) in [0, 1].

    kind: "image" (``image`` repeated, (C, H, W) or (1, C, H, W)), "uniform" noise in [0, 1],
    "gaussian" noise N(0.5, 0.15^2) clipped, or "zeros". Noise comes from a CPU generator seeded by
    ``seed`` (same start on CPU and GPU); each of the n images gets its own draw.
    """
    g = torch.Generator().manual_seed(seed)
    if kind == "image":
        if image is None:
            raise ValueError("start='image' needs image=")
        img = image.detach().reshape(1, *shape).float()
        if not torch.isfinite(img).all() or img.min() < 0 or img.max() > 1:
            raise ValueError("the start image must be finite and in [0, 1]")
        out = img.repeat(n, 1, 1, 1)
    elif kind == "uniform":
        out = torch.rand((n, *shape), generator=g)
    elif kind == "gaussian":
        out = (0.5 + 0.15 * torch.randn((n, *shape), generator=g)).clamp(0, 1)
    elif kind == "zeros":
        out = torch.zeros((n, *shape))
    else:
        raise ValueError(f"start must be one of {STARTS}, not {kind!r}")
    return out.to(device if device is not None else (image.device if image is not None else "cpu"))
