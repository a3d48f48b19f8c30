"""Transforms applied to the image before each forward pass (robustness to them = less adversarial noise)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def jitter(x: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Roll the batch by a random shift of up to ``pixels`` in each direction (one shift per step)."""
    if pixels <= 0:
        return x
    dy, dx = (int(v) for v in torch.randint(-pixels, pixels + 1, (2,), generator=generator))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def blur(x: torch.Tensor, sigma: float = 0.5) -> torch.Tensor:
    """Gaussian blur (3 x 3 kernel) per channel: applied every k steps it removes high-frequency noise."""
    t = torch.arange(-1, 2, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    k = (k[:, None] * k[None, :]) / k.sum() ** 2
    c = x.shape[1]
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(c, 1, 3, 3), groups=c)
