"""Make a photo read as a chosen class: the smallest ε, and a fool a room believes.

    from robust_core.imagenet.fool import fool_photo
    result = fool_photo(model, x, target=6, eps_max=16 / 255)   # "make the cat a stingray"
    result.eps, result.at_boundary      # the smallest L∞ ε found, and the photo that crossed there
    result.strong_eps, result.strong    # twice that ε with every PGD step run: the target far ahead

Why two photos: the smallest ε is found by bisection with PGD stopping as soon as the photo reads the target, so
the photo found there sits on the decision boundary, the target barely first (Chelsea the cat on EfficientNet-Lite0:
stingray 9.3% against Egyptian cat 8.2%, at ε = 1.25/255). That answers "how little does it take", but reads as a
failure on a projector. At twice that ε, with all steps run (no stop on success), the same goal gives stingray 100.0%.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..tensors import eval_mode

# The strong fool's ε as a multiple of the smallest one: 2× reaches >= 99% on the shipped photos for stingray.
STRONG_FACTOR = 2.0
# Bisections of [0, eps_max]: 6 bracket the smallest ε to eps_max / 64, a quarter of a grey level at 16/255, finer
# than a projector shows. A 7th halves that and costs a quarter more passes (Chelsea to stingray, EfficientNet-Lite0,
# one thread: 144 against 180 forward-backward passes, about 0.1 s each).
BISECTION_STEPS = 6


@dataclass(frozen=True)
class FoolResult:
    eps: float  # the smallest L∞ ε found (pixel units); inf when none up to eps_max works, 0 when x reads target
    at_boundary: torch.Tensor | None  # the photo that read as the target at ``eps`` (None when eps is inf)
    strong_eps: float  # min(STRONG_FACTOR * eps, eps_max)
    strong: torch.Tensor | None  # targeted PGD at ``strong_eps``, every step run

    @property
    def found(self) -> bool:
        return self.at_boundary is not None


def fool_photo(model, x: torch.Tensor, *, target: int, eps_max: float, steps: int = 40, seed: int = 0,
               strong_factor: float = STRONG_FACTOR, bisection_steps: int = BISECTION_STEPS,
               on_progress: Callable[[float, str], None] | None = None) -> FoolResult:
    """Targeted L∞ PGD on the photo ``x`` (1, 3, H, W) in [0, 1] toward class ``target``.

    The smallest ε in [0, ``eps_max``] (:func:`robust_core.evaluation.minimal_eps`, ``bisection_steps`` bisections)
    and its witness, the very photo that crossed (a replay from another random start need not cross again); then PGD at
    ``strong_factor`` × that ε (at most ``eps_max``) with ``steps`` steps all run. ``on_progress(fraction, text)``.
    Returns detached tensors on ``x``'s device; ``model.training`` is restored.
    """
    from ..attacks import get_attack
    from ..evaluation import minimal_eps

    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one photo (1, 3, H, W), got {tuple(x.shape)}")
    if not eps_max > 0:
        raise ValueError(f"eps_max must be positive, not {eps_max!r}")
    if not strong_factor >= 1:
        raise ValueError(f"strong_factor must be at least 1, not {strong_factor!r}")
    report = on_progress or (lambda fraction, text: None)
    with eval_mode(model):
        with torch.no_grad():
            y = model(x).argmax(1)
        eps, witness = minimal_eps(model, x, y, attack="pgd", target=int(target), eps_max=float(eps_max), steps=steps,
                                   bisection_steps=bisection_steps, seed=seed, return_adversarial=True,
                                   on_progress=lambda f: report(0.9 * f, "searching the smallest ε"))
        eps = float(eps[0])
        if not np.isfinite(eps):
            return FoolResult(eps, None, float(eps_max), None)
        strong_eps = min(strong_factor * eps, float(eps_max))
        report(0.9, f"the same goal at {strong_factor:g}× that ε, every step run")
        strong = x.detach().clone() if eps == 0 else get_attack("pgd")(
            model, x, y, eps=strong_eps, targeted=True, target=torch.tensor([int(target)], device=x.device),
            steps=steps, stop_on_success=False, seed=seed)
        report(1.0, "done")
        return FoolResult(eps, witness.detach(), strong_eps, strong.detach())


def scaled_change(delta: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``delta`` shown around grey (0.5 = unchanged) with its largest |change| at full contrast, and the factor used.

    Why not a fixed ×10: at ε = 1/255 that is ±0.04 around grey, a flat grey square on a projector."""
    largest = float(delta.abs().max())
    factor = 0.5 / largest if largest > 0 else 1.0
    return (0.5 + factor * delta).clamp(0, 1).detach(), factor


__all__ = ["BISECTION_STEPS", "FoolResult", "STRONG_FACTOR", "fool_photo", "scaled_change"]
