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


def gaussian_noise(x: torch.Tensor, sigma: float, samples: int, generator: torch.Generator) -> torch.Tensor:
    """``samples`` noisy copies of each image, x + N(0, sigma^2) (N * samples, C, H, W), copies of one image adjacent.

    Averaging the loss over them smooths it (the expectation over noise that randomised smoothing and
    EOT use). Why the lab needs it: MNIST models trained against eps = 0.3 threshold their input
    (Madry et al. 2018), so a pixel darker than about 0.3 gets an input gradient of ~1e-6 and plain
    ascent can only reshape strokes that exist. Under noise those pixels sometimes cross the threshold,
    and the averaged gradient says where a new stroke would raise the target. Not clipped to [0, 1],
    as in randomised smoothing: clipping would put half the samples of a black pixel back at 0. The
    noise comes from a CPU generator (same draw on CPU and GPU).
    """
    if sigma <= 0 or samples < 1:
        raise ValueError("noise needs sigma > 0 and samples >= 1")
    copies = x.repeat_interleave(samples, 0)
    noise = torch.randn(copies.shape, generator=generator, dtype=copies.dtype).to(copies.device)
    return copies + sigma * noise


def blur(x: torch.Tensor, sigma: float = 0.5) -> torch.Tensor:
    """Gaussian blur (3 x 3 kernel) per channel: applied every k steps it removes high-frequency noise."""
    t = torch.arange(-1, 2, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    k = (k[:, None] * k[None, :]) / k.sum() ** 2
    c = x.shape[1]
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(c, 1, 3, 3), groups=c)
