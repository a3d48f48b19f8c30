"""Adversarial attacks, ours to write and test (no attack library as a dependency).

One contract (torchattacks / AutoAttack style):

    attack(model, x, y, *, eps, targeted=False, target=None, seed=0, **params) -> x_adv

``x`` float (N, C, H, W) in [0, 1], ``y`` int64 (N,); ``x_adv`` has the same shape, dtype and
device, lies in [0, 1] and within ``eps`` of x in the attack's norm. The model is attacked in
eval mode and given back in the mode it came in; gradients flow to the input only, never into
the parameters' ``.grad``. Every attack is registered in :data:`ATTACKS` with its paper and norm.

Every attack takes ``targeted`` and ``target``. With ``targeted=True`` it moves toward ``target`` (a class, or one
per example) where its spec's ``targeted`` is True; an untargeted-only attack (DeepFool, APGD-T, AutoAttack) raises
a ValueError saying "untargeted only" and why. Run an attack through its spec, ``ATTACKS[name](model, x, y, ...)``:
the spec's defaults (APGD-DLR's ``loss="dlr"``, PGD-L2's ``norm="l2"``) reach the function, which ``spec.fn`` skips.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ._common import NORMS, flat_norm
from .fab import fab
from .autoattack import autoattack
from .gradient import apgd, apgd_t, fgsm, pgd
from .minimal import cw_l2, deepfool, ead
from .square import square


NORM_SYMBOLS = {"linf": "L∞", "l2": "L2", "l1": "L1"}


@dataclass(frozen=True)
class AttackSpec:
    name: str
    title: str
    fn: Callable[..., torch.Tensor]
    norm: str  # the norm its eps bounds
    paper: str
    kind: str  # "gradient" (white-box), "score" (black-box, outputs only), "minimal" (smallest perturbation),
    # "ensemble" (a chain of the others: AutoAttack)
    targeted: bool  # True: targeted=True moves toward target; False: untargeted only, targeted=True raises ValueError
    defaults: dict[str, Any] = field(default_factory=dict)

    def __call__(self, model, x, y, **kwargs) -> torch.Tensor:
        """The attack with this spec's defaults, which keyword arguments given here override."""
        return self.fn(model, x, y, **{**self.defaults, **kwargs})

    @property
    def label(self) -> str:
        """"PGD · L∞": the name without the norm some titles carry ("PGD (L-inf)"), then the norm, once (for pickers)."""
        name = re.sub(r"\s*\((L-inf|L2|L1)\)$|\s+(L-inf|L2|L1)$", "", self.title)
        return f"{name} · {NORM_SYMBOLS[self.norm]}"


ATTACKS: dict[str, AttackSpec] = {a.name: a for a in [
    AttackSpec("fgsm", "FGSM", fgsm, "linf", "Goodfellow et al., ICLR 2015", "gradient", True),
    AttackSpec("pgd", "PGD (L-inf)", pgd, "linf", "Madry et al., ICLR 2018", "gradient", True, {"norm": "linf"}),
    AttackSpec("pgd_l2", "PGD (L2)", pgd, "l2", "Madry et al., ICLR 2018", "gradient", True, {"norm": "l2"}),
    AttackSpec("apgd_ce", "APGD-CE", apgd, "linf", "Croce & Hein, ICML 2020", "gradient", True, {"loss": "ce"}),
    AttackSpec("apgd_dlr", "APGD-DLR", apgd, "linf", "Croce & Hein, ICML 2020", "gradient", True, {"loss": "dlr"}),
    AttackSpec("apgd_t", "APGD-T", apgd_t, "linf", "Croce & Hein, ICML 2020", "gradient", False),
    AttackSpec("deepfool", "DeepFool (L2)", deepfool, "l2", "Moosavi-Dezfooli et al., CVPR 2016", "minimal", False, {"norm": "l2"}),
    AttackSpec("deepfool_linf", "DeepFool (L-inf)", deepfool, "linf", "Moosavi-Dezfooli et al., CVPR 2016", "minimal", False,
               {"norm": "linf"}),
    AttackSpec("cw_l2", "Carlini-Wagner L2", cw_l2, "l2", "Carlini & Wagner, IEEE S&P 2017", "minimal", True),
    AttackSpec("ead", "EAD (elastic net)", ead, "l1", "Chen et al., AAAI 2018", "minimal", True),
    AttackSpec("fab", "FAB (L-inf)", fab, "linf", "Croce & Hein, ICML 2020", "minimal", True, {"norm": "linf"}),
    AttackSpec("fab_l2", "FAB (L2)", fab, "l2", "Croce & Hein, ICML 2020", "minimal", True, {"norm": "l2"}),
    AttackSpec("fab_l1", "FAB (L1)", fab, "l1", "Croce & Hein, ICML 2020", "minimal", True, {"norm": "l1"}),
    AttackSpec("autoattack_standard", "AutoAttack standard", autoattack, "linf", "Croce & Hein, ICML 2020", "ensemble", False,
               {"version": "standard"}),
    AttackSpec("autoattack_fast", "AutoAttack fast", autoattack, "linf", "Croce & Hein, ICML 2020 (ours: APGD-CE, APGD-T×3)",
               "ensemble", False, {"version": "fast"}),
    AttackSpec("square", "Square (L-inf)", square, "linf", "Andriushchenko et al., ECCV 2020", "score", True),
]}


def get_attack(name: str) -> AttackSpec:
    try:
        return ATTACKS[name]
    except KeyError:
        raise ValueError(f"Unknown attack {name!r}; choose one of {sorted(ATTACKS)}") from None


__all__ = ["ATTACKS", "AttackSpec", "NORMS", "apgd", "apgd_t", "cw_l2", "deepfool", "ead", "fab", "fgsm", "flat_norm",
           "get_attack", "pgd", "square"]
