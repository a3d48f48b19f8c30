"""What an AutoAttack run will cost on this machine, said before it starts: a WRN-28-10 on 1,000 CIFAR-10 images is
minutes on a GPU and days on a CPU, and a researcher should learn which before waiting.

The estimate counts forward-backward passes per image, stage by stage (:data:`robust_core.attacks.autoattack.VERSIONS`),
and times one pass of the model on this device. Bounds, not a prediction: the upper one has every image survive
every stage (a robust network), each stage running all its iterations; the lower one is the first stage's whole
budget, which a network with no robustness does not even spend (its images break in a few steps and leave).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..attacks.autoattack import VERSIONS
from ..tensors import ce_loss, eval_mode, input_gradient

# A Square query is one forward pass, about a third of a forward-backward one.
FORWARD_SHARE = 1 / 3
# FAB's step computes the gradients of two logits (the class and the target): about two backward passes.
FAB_PASSES_PER_ITERATION = 2
PROBE_BATCH = 16
HOURS_WORTH_SAYING = 1.0


def passes_per_image(version: str) -> tuple[float, float]:
    """(at best, at worst) forward-backward passes per image of AutoAttack ``version``."""
    stages = VERSIONS[version]
    worst = 0.0
    for name, params in stages:
        if name == "apgd_ce":
            worst += params["steps"] * params.get("restarts", 1)
        elif name == "apgd_t":
            worst += params["steps"] * params["n_target_classes"] * params.get("restarts", 1)
        elif name == "fab_t":
            worst += params["n_iter"] * params["n_target_classes"] * FAB_PASSES_PER_ITERATION
        elif name == "square":
            worst += params["n_queries"] * FORWARD_SHARE
    first_name, first = stages[0]
    best = first["steps"] * first.get("restarts", 1) if first_name == "apgd_ce" else worst
    return float(best), worst


@dataclass(frozen=True)
class CostEstimate:
    low_s: float
    high_s: float
    seconds_per_pass: float  # one image's forward-backward pass, in batches of PROBE_BATCH
    device: str

    def text(self, images: int) -> str:
        def duration(s: float) -> str:
            return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"

        line = (f"AutoAttack on {images:,} images should take at most {duration(self.high_s)} on {self.device} "
                f"(every image robust; under {duration(self.low_s)} when its first stage breaks them all)")
        if self.high_s >= HOURS_WORTH_SAYING * 3600 and self.device == "cpu":
            line += (": hours on a CPU. A CUDA GPU runs it in a fraction of that (the lab uses one when present; "
                     "ROBUST_DEVICE=cuda), or try --n 100 first")
        return line + "."


def estimate_autoattack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                        version: str = "standard") -> CostEstimate:
    """Bounds on the seconds AutoAttack ``version`` takes on (x, y) with ``model`` on x's device, from one timed
    forward-backward pass of a small batch (after a first, untimed one: kernels and caches warm up)."""
    batch, labels = x[:PROBE_BATCH], y[:PROBE_BATCH]
    with eval_mode(model):
        input_gradient(ce_loss(model, labels), batch)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        input_gradient(ce_loss(model, labels), batch)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        per_pass = (time.perf_counter() - start) / len(batch)
    best, worst = passes_per_image(version)
    return CostEstimate(best * per_pass * len(x), worst * per_pass * len(x), per_pass, x.device.type)
