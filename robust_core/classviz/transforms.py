"""Transforms applied to the image before each forward pass (robustness to them = less adversarial noise).

All take and return images (N, C, H, W) of any C, H, W; the random ones draw from the loop's CPU generator
(one draw per step, shared by the batch, so that a batch of targets gives the same images as one run each).
"""
from __future__ import annotations

import math

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


def _resample(x: torch.Tensor, theta: torch.Tensor, padding: str) -> torch.Tensor:
    """x (N, C, H, W) resampled through the 2 x 3 affine map ``theta`` (normalised coordinates, output -> input),
    bilinear, the same size as x; pixels that come from outside the image are filled by ``padding``."""
    grid = F.affine_grid(theta.to(x.dtype).to(x.device).expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def random_scale(x: torch.Tensor, scales: float | tuple[float, float], generator: torch.Generator, *,
                 padding: str = "reflection") -> torch.Tensor:
    """Zoom the batch by a random factor s, uniform in ``scales`` = (lo, hi) (a number s0 means (1 - s0, 1 + s0)),
    about the image centre, keeping the size (H, W): s > 1 crops the zoomed image back to the input size, s < 1
    pads it (``padding``: "reflection", "border" or "zeros"). One draw per step for the whole batch, from
    ``generator`` (CPU); differentiable in x (bilinear resampling). The identity, with no draw, when lo = hi = 1.

    Why (Olah et al. 2017, "Feature Visualization", Distill; Lucent's ``random_scale``): a pattern the
    network reads at several scales is a feature of the class, not a pixel-exact adversarial texture.
    """
    lo, hi = (1.0 - float(scales), 1.0 + float(scales)) if isinstance(scales, (int, float)) else map(float, scales)
    if not 0 < lo <= hi:
        raise ValueError(f"scales must satisfy 0 < lo <= hi, not {(lo, hi)}")
    if lo == hi == 1.0:
        return x
    s = lo + (hi - lo) * float(torch.rand((), generator=generator))
    theta = torch.tensor([[1.0 / s, 0.0, 0.0], [0.0, 1.0 / s, 0.0]])  # output pixel at u reads input at u / s
    return _resample(x, theta[None], padding)


def random_rotate(x: torch.Tensor, degrees: float, generator: torch.Generator, *,
                  padding: str = "reflection") -> torch.Tensor:
    """Rotate the batch about its centre by a random angle, uniform in [-degrees, degrees] (one draw per step for
    the whole batch, from ``generator``), keeping the size; the corners are filled by ``padding`` ("reflection",
    "border" or "zeros"). Rotation in pixels, also for H != W (the normalised grid is corrected for the aspect
    ratio). Differentiable in x. The identity, with no draw, when degrees = 0."""
    if degrees < 0:
        raise ValueError("degrees must be >= 0")
    if degrees == 0:
        return x
    angle = math.radians(float(degrees) * (2 * float(torch.rand((), generator=generator)) - 1))
    h, w = x.shape[-2:]
    c, s = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]])
    return _resample(x, theta[None], padding)
