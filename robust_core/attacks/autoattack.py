"""AutoAttack's protocol, ours (Croce & Hein, ICML 2020): a fixed chain of parameter-free attacks, each run only on
the points the previous ones left robust, reported per stage.

    from robust_core.attacks.autoattack import run_autoattack
    report = run_autoattack(model, x, y, eps=0.3, version="standard", seed=0)
    report.robust_accuracy, [s.robust_accuracy for s in report.stages]   # final, and after each stage

Versions (L∞; the published "standard" parameters):
- ``standard``: APGD-CE (100 steps, 1 restart) → APGD-T (100 steps, 9 target classes) → FAB-T (100 iterations,
  9 target classes) → Square (5,000 queries, p_init 0.8, its window schedule not rescaled to the budget).
- ``fast`` (ours, for quick looks): APGD-CE (100 steps) → APGD-T (100 steps, 3 target classes).
A point counts as broken at the first stage that misclassifies it within ε; its adversarial example is kept
(per-example best so far). Every stage's parameters and seed are in the report, and the sanity checks of the
reference are run on the result (inside the ε ball and [0, 1]; robust accuracy never above the clean one).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..device import channels_last_copy
from ..tensors import eval_mode, predict
from ._common import check_inputs, refuse_targeted
from .norms import flat_norm

VERSIONS: dict[str, list[tuple[str, dict]]] = {
    "standard": [
        ("apgd_ce", {"steps": 100, "restarts": 1}),
        ("apgd_t", {"steps": 100, "n_target_classes": 9, "restarts": 1}),
        ("fab_t", {"n_iter": 100, "n_target_classes": 9}),
        ("square", {"n_queries": 5000, "p_init": 0.8, "rescale_schedule": False}),
    ],
    "fast": [
        ("apgd_ce", {"steps": 100, "restarts": 1}),
        ("apgd_t", {"steps": 100, "n_target_classes": 3, "restarts": 1}),
    ],
}


@dataclass
class StageResult:
    attack: str
    params: dict
    attacked: int  # points still robust when the stage started
    broken: int  # of those, the points it broke
    robust_accuracy: float  # after this stage, over all points
    seconds: float


@dataclass
class AutoAttackReport:
    version: str
    eps: float
    norm: str
    seed: int
    clean_accuracy: float
    robust_accuracy: float
    stages: list[StageResult] = field(default_factory=list)
    x_adv: torch.Tensor | None = None
    robust: torch.Tensor | None = None  # (N,) bool: still correct after the whole chain
    # (N,) long: 0 misclassified clean, k broken by stage k (1-based), -1 robust after every stage.
    broken_at: torch.Tensor | None = None

    def protocol(self) -> str:
        """The parameters, as every output states them."""
        chain = " → ".join(f"{s.attack}({', '.join(f'{k}={v}' for k, v in s.params.items())})" for s in self.stages)
        return f"AutoAttack {self.version}, L∞ ε = {self.eps:g}, seed {self.seed}: {chain}"


def _fab_t(model, x, y, *, eps: float, n_iter: int, n_target_classes: int, seed: int) -> torch.Tensor:
    """FAB-T as AutoAttack runs it: targeted FAB toward each of the ``n_target_classes`` highest other logits in turn,
    each on the points still correctly classified, with the ε budget (a perturbation found above ε does not count)."""
    from . import get_attack

    fab = get_attack("fab")
    x_adv = x.clone()
    with torch.no_grad():
        order = model(x).argsort(dim=1, descending=True)
    for rank in range(1, min(n_target_classes, order.shape[1] - 1) + 1):
        robust = (predict(model, x_adv) == y).nonzero().flatten()
        if len(robust) == 0:
            break
        target = order[robust, rank]
        # Points still robust are classified correctly, so rank 0 is their true class and ranks 1.. are the others.
        # Any misclassification counts, as in the reference's FAB-T: the target only picks the boundary to cross.
        found = fab(model, x[robust], y[robust], eps=eps, targeted=True, target=target, n_iter=n_iter,
                    any_misclassification=True, seed=seed)
        broken = predict(model, found) != y[robust]
        x_adv[robust[broken]] = found[broken]
    return x_adv


def run_autoattack(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, version: str = "standard", seed: int = 0,
                   norm: str = "linf", on_stage: Callable[[StageResult], None] | None = None) -> AutoAttackReport:
    """Run AutoAttack ``version`` at L∞ ``eps`` on (x, y); see the module's docstring. The model is used in eval mode
    and given back as it was; tensors come back detached."""
    from . import get_attack

    if version not in VERSIONS:
        raise ValueError(f"AutoAttack version must be one of {sorted(VERSIONS)}, not {version!r}")
    if norm != "linf":
        raise ValueError("our AutoAttack chain is the L∞ one")
    check_inputs(x, y, eps, norm)
    x = x.detach()
    # Stages run on a channels-last copy (the same network, faster passes on a CPU); every verdict is the model's
    # own, so a point at the decision boundary counts as the user's model reads it, whatever the float rounding.
    crafter = channels_last_copy(model)
    with eval_mode(model), eval_mode(crafter):
        robust = predict(model, x) == y
        clean = float(robust.float().mean())
        broken_at = torch.where(robust, -1, 0)
        x_adv = x.clone()
        report = AutoAttackReport(version, float(eps), norm, seed, clean, clean)
        for number, (name, params) in enumerate(VERSIONS[version], start=1):
            t0 = time.perf_counter()
            idx = robust.nonzero().flatten()
            broken = 0
            if len(idx):
                xs, ys = x[idx], y[idx]
                if name == "fab_t":
                    found = _fab_t(crafter, xs, ys, eps=eps, seed=seed, **params)
                else:
                    found = get_attack(name)(crafter, xs, ys, eps=eps, seed=seed, **params)
                fooled = predict(model, found) != ys
                x_adv[idx[fooled]] = found[fooled]
                robust[idx[fooled]] = False
                broken_at[idx[fooled]] = number
                broken = int(fooled.sum())
            stage = StageResult(name, dict(params), len(idx), broken, float(robust.float().mean()),
                                time.perf_counter() - t0)
            report.stages.append(stage)
            if on_stage is not None:
                on_stage(stage)
    # The reference's sanity checks: every adversarial example inside the ε ball and the [0, 1] box.
    if float(flat_norm(x_adv - x, norm).max()) > eps + 1e-6 or float(x_adv.min()) < 0 or float(x_adv.max()) > 1:
        raise RuntimeError("AutoAttack produced a point outside the ε ball or [0, 1]: a bug in one of its stages")
    report.robust_accuracy, report.x_adv, report.robust = float(robust.float().mean()), x_adv.detach(), robust
    report.broken_at = broken_at
    return report


def autoattack(model, x, y, *, eps: float, version: str = "standard", seed: int = 0, targeted: bool = False,
               target=None) -> torch.Tensor:
    """AutoAttack (Croce & Hein, ICML 2020) under the attacks' contract: ``x_adv`` within L∞ ``eps``. Norm: L∞.

    Runs the chain of :func:`run_autoattack` (``version`` "standard" or "fast") and returns its adversarial examples
    (the input itself where every stage failed). Untargeted only, as the protocol is.

    Example:
        >>> x_adv = autoattack(model, x, y, eps=0.3, version="standard")
    """
    refuse_targeted("AutoAttack", "its protocol measures robust accuracy (APGD-T and FAB-T pick their own targets)",
                    targeted, target)
    return run_autoattack(model, x, y, eps=eps, version=version, seed=seed).x_adv


__all__ = ["AutoAttackReport", "StageResult", "VERSIONS", "autoattack", "run_autoattack"]
