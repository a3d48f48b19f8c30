"""The norms attacks measure ε in, and the largest ε each can mean on images of a given size."""
from __future__ import annotations

import math

import torch

NORMS = ("linf", "l2", "l1")
NORM_SYMBOLS = {"linf": "L∞", "l2": "L2", "l1": "L1"}


def eps_ceiling(norm: str, shape) -> float:
    """The largest distance in ``norm`` between two images of ``shape`` ((C, H, W), or any shape of one image) with
    pixels in [0, 1]: 1 for L∞, sqrt(C·H·W) for L2, C·H·W for L1 (28 and 784 for MNIST's 1×28×28; about 55.4 and
    3,072 for 3×32×32 colour images). A larger ε allows every image of that size."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {norm!r}")
    pixels = math.prod(int(s) for s in shape)
    return {"linf": 1.0, "l2": math.sqrt(pixels), "l1": float(pixels)}[norm]


def flat_norm(v: torch.Tensor, p: str) -> torch.Tensor:
    """Per example (the first dimension), the ``p`` norm ("linf", "l2" or "l1") of all its other values."""
    flat = v.flatten(1)
    if p == "linf":
        return flat.abs().amax(1)
    if p == "l2":
        return flat.norm(dim=1)
    return flat.abs().sum(1)


__all__ = ["NORMS", "NORM_SYMBOLS", "eps_ceiling", "flat_norm"]
