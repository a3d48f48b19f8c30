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

What code needs to know about an attack is on its spec, never read from its name: how it searches
(``kind``, ``single_step``, ``per_example_eps``), what it costs (:meth:`AttackSpec.cost`), what a user may tune
(``tunable``) and how it is described (:attr:`AttackSpec.caption`).
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .autoattack import autoattack
from .fab import fab
from .gradient import _checkpoints, apgd, apgd_t, fgsm, pgd
from .minimal import cw_l2, deepfool, ead
from .norms import NORM_SYMBOLS, NORMS, eps_ceiling, flat_norm
from .square import square


@dataclass(frozen=True)
class AttackCost:
    """The passes one image costs in one call of an attack when nothing stops early (every step runs on it): what an
    image that survives really costs, an upper bound for one that breaks."""
    forwards: int  # forward passes (a gradient's included)
    gradients: int  # backward passes to the input

    @property
    def work(self) -> float:
        """In forward passes, a backward pass costing about two: what a time estimate weighs attacks by."""
        return float(self.forwards + 2 * self.gradients)


@dataclass(frozen=True)
class Tunable:
    """A parameter of an attack that a user may set (the Attack page's controls): its label and its range."""
    name: str
    label: str
    low: int
    high: int


# ---- cost models: (every parameter the attack runs with, FGSM's grid points) -> AttackCost -----------------------
def _runs(p: dict) -> int:
    """Runs per call: restarts, times the targets tried in turn (APGD-T, AutoAttack's FAB-T)."""
    return int(p.get("restarts") or 1) * int(p.get("n_target_classes") or 1)


def _single_step_cost(p: dict, grid_points: int) -> AttackCost:
    # One gradient, then one forward pass per eps of minimal_eps' grid (the step's direction does not depend on eps).
    return AttackCost(grid_points + 1, 1)


def _iterative_cost(p: dict, grid_points: int) -> AttackCost:
    steps, runs = int(p.get("steps") or 1), _runs(p)
    return AttackCost(runs * (steps + 2) + 2, runs * steps)


def _apgd_cost(p: dict, grid_points: int) -> AttackCost:
    # One more forward pass at each step-size checkpoint (a halved example restarts from its best point).
    steps, runs = int(p.get("steps") or 1), _runs(p)
    return AttackCost(runs * (steps + 2 + len(_checkpoints(steps))) + 2, runs * steps)


def _boundary_cost(p: dict, grid_points: int) -> AttackCost:
    # FAB: a forward and a Jacobian pass per iteration.
    iterations = int(p.get("n_iter") or 100) * _runs(p)
    return AttackCost(2 * iterations + 2, iterations)


def _minimal_cost(passes_per_step: int) -> Callable[[dict, int], AttackCost]:
    """DeepFool, C&W, EAD: ``steps`` per binary-search round (one round for DeepFool), ``passes_per_step`` forward
    passes each (EAD's FISTA evaluates two points)."""
    def cost(p: dict, grid_points: int) -> AttackCost:
        steps = int(p.get("steps") or 1) * int(p.get("binary_search_steps") or 1)
        return AttackCost(steps * passes_per_step + 2, steps)
    return cost


def _query_cost(p: dict, grid_points: int) -> AttackCost:
    return AttackCost(int(p.get("n_queries") or 1) + 2, 0)


def _chain_cost(p: dict, grid_points: int) -> AttackCost:
    from .autoattack import VERSIONS

    stages = [stage_cost(name, params) for name, params in VERSIONS[p["version"]]]
    return AttackCost(sum(s.forwards for s in stages), sum(s.gradients for s in stages))


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
    single_step: bool = False  # one gradient step (FGSM): success is not monotone in eps, and it masks most easily
    per_example_eps: bool = False  # eps may be a tensor of one value per example (one call per bisection round)
    cost_model: Callable[[dict, int], AttackCost] | None = None  # see cost(); None: an iterative attack's
    tunable: tuple[Tunable, ...] = ()  # what a user may set, in the order the controls show them
    full_name: str = ""  # for the caption; the label when empty
    summary: str = ""  # what it does, in a few sentences of Markdown

    def __call__(self, model, x, y, **kwargs) -> torch.Tensor:
        """The attack with this spec's defaults, which keyword arguments given here override."""
        return self.fn(model, x, y, **{**self.defaults, **kwargs})

    @property
    def short_title(self) -> str:
        """"PGD": the title without the norm some titles carry ("PGD (L-inf)", "Carlini-Wagner L2")."""
        return re.sub(r"\s*\((L-inf|L2|L1)\)$|\s+(L-inf|L2|L1)$", "", self.title)

    @property
    def label(self) -> str:
        """"PGD · L∞": the name without the norm some titles carry, then the norm, once (for pickers)."""
        return f"{self.short_title} · {NORM_SYMBOLS[self.norm]}"

    @property
    def caption(self) -> str:
        """Markdown: the attack's full name, its paper once, and what it does."""
        return f"**{self.full_name or self.label}** ({self.paper}). {self.summary}".rstrip()

    def resolve(self, params: dict | None = None) -> dict[str, Any]:
        """Every parameter the attack runs with: the function's defaults, this spec's, then ``params``."""
        own = {k: p.default for k, p in inspect.signature(self.fn).parameters.items() if p.default is not p.empty}
        return {**own, **self.defaults, **(params or {})}

    def cost(self, params: dict | None = None, *, grid_points: int = 100) -> AttackCost:
        """What one image costs in one call with ``params`` when nothing stops early (see :class:`AttackCost`):
        minimal_eps' progress estimate plans its calls with it, AutoAttack's weighs its stages by it.
        ``grid_points``: the eps grid a single-step attack is searched on."""
        return (self.cost_model or _iterative_cost)(self.resolve(params), grid_points)


# AutoAttack's stages (robust_core.attacks.autoattack.VERSIONS) that run a registered attack under another name:
# FAB-T is targeted FAB toward each of its n_target_classes classes in turn.
_STAGE_ATTACKS = {"fab_t": "fab"}


def stage_cost(stage: str, params: dict) -> AttackCost:
    """The cost of one AutoAttack stage with its chain's ``params`` per image it attacks (see :class:`AttackCost`)."""
    return ATTACKS[_STAGE_ATTACKS.get(stage, stage)].cost(params)


_STEPS = Tunable("steps", "Steps", 1, 1000)
_SEARCH_STEPS = Tunable("steps", "Steps per search", 10, 2000)
_PGD = ("`steps` steps of size `step_size` (default 2.5 * eps / steps, Madry's choice) along the sign (L-inf) or the "
        "normalised gradient (L2) of the cross-entropy, each followed by a projection onto the eps-ball and [0, 1]; "
        "uniform random start in the ball; `restarts` runs, each only on the examples still classified correctly "
        "(best-so-far per example).")
_APGD = ("PGD with momentum (0.75) and no step-size to tune: it starts at 2 * eps and halves, per example, at "
         "checkpoints (22%, 41%, 57%, ... of the budget) when fewer than `rho` of the steps since the last checkpoint "
         "raised the loss, or when neither step nor best loss moved; a halved example restarts from its best point. "
         "Keeps the first adversarial point found per example; restarts run only on examples not yet broken.")
_DEEPFOOL = ("Linearises the classifier around the current point and steps to the nearest linearised decision "
             "boundary, |f_k - f_y| / ||grad f_k - grad f_y||_q (q = 2 for L2, q = 1 for L-inf), until the label "
             "changes; each step is multiplied by 1 + overshoot and the point clipped to [0, 1]. Gives each example's "
             "(approximately) minimal perturbation: exact for an affine classifier away from the box's faces.")
_FAB = ("Finds a small perturbation that changes the decision. Each step linearises the classifier at the current "
        "point x_i and picks the nearest linearised boundary, the class k with the smallest |f_k - f_y| / "
        "||grad (f_k - f_y)||_q (q the dual norm). It projects both x_i and the original image onto that hyperplane "
        "within the box [0, 1]^d (exact projections for each norm), then steps to (1 - alpha) (x_i + eta delta_i) + "
        "alpha (x + eta delta_0), alpha = min(||delta_i|| / (||delta_i|| + ||delta_0||), alpha_max): the step leans "
        "toward the original image, which keeps the perturbation small. An adversarial point is recorded (the "
        "smallest per image is kept) and pulled back to (1 - beta) x + beta x_adv, so the search closes in on the "
        "boundary from both sides.")
_CW = ("Minimises ||x' - x||_2^2 + c * f(x') with x' = (tanh(w) + 1) / 2 (always a valid image) by Adam on w; f is "
       "the margin loss with confidence `kappa`. `c` is tuned per example by binary search (x10 until success, then "
       "bisection) over `binary_search_steps` rounds of `steps` Adam steps; the smallest successful perturbation is "
       "kept.")
_EAD = ("Minimises c * f(x') + ||x' - x||_2^2 + beta * ||x' - x||_1 over [0, 1] by ISTA (or FISTA, with Nesterov "
        "momentum): a gradient step on the smooth part, then the shrinkage-thresholding operator, which zeroes "
        "changes smaller than beta and yields sparse perturbations. The learning rate decays as sqrt(1 - k / steps); "
        "c is tuned by binary search as in C&W.")
_AUTOATTACK = ("The field's reference protocol: a fixed chain of parameter-free attacks, each run only on the points "
               "the previous ones left robust, at one eps. Its robust accuracy is the number to report.")

_MADRY, _CROCE = "Madry et al., ICLR 2018", "Croce & Hein, ICML 2020"
_DEEPFOOL_PAPER = "Moosavi-Dezfooli et al., CVPR 2016"

ATTACKS: dict[str, AttackSpec] = {a.name: a for a in [
    AttackSpec("fgsm", "FGSM", fgsm, "linf", "Goodfellow et al., ICLR 2015", "gradient", True, single_step=True,
               cost_model=_single_step_cost, full_name="Fast Gradient Sign Method",
               summary="One step of size `eps` along the sign of the input gradient of the cross-entropy: "
                       "x + eps * sign(grad CE(x, y)) untargeted, x - eps * sign(grad CE(x, target)) targeted."),
    AttackSpec("pgd", "PGD (L-inf)", pgd, "linf", _MADRY, "gradient", True, {"norm": "linf"}, per_example_eps=True,
               cost_model=_iterative_cost,
               tunable=(_STEPS, Tunable("restarts", "Restarts", 1, 20)), full_name="Projected Gradient Descent",
               summary=_PGD),
    AttackSpec("pgd_l2", "PGD (L2)", pgd, "l2", _MADRY, "gradient", True, {"norm": "l2"}, per_example_eps=True,
               cost_model=_iterative_cost,
               tunable=(_STEPS, Tunable("restarts", "Restarts", 1, 20)), full_name="Projected Gradient Descent",
               summary=_PGD),
    AttackSpec("apgd_ce", "APGD-CE", apgd, "linf", _CROCE, "gradient", True, {"loss": "ce"}, per_example_eps=True,
               cost_model=_apgd_cost, tunable=(_STEPS,), full_name="Auto-PGD", summary=_APGD),
    AttackSpec("apgd_dlr", "APGD-DLR", apgd, "linf", _CROCE, "gradient", True, {"loss": "dlr"}, per_example_eps=True,
               cost_model=_apgd_cost, tunable=(_STEPS,), full_name="Auto-PGD", summary=_APGD),
    AttackSpec("apgd_t", "APGD-T", apgd_t, "linf", _CROCE, "gradient", False, cost_model=_apgd_cost,
               tunable=(_STEPS,),
               summary="APGD-T: targeted APGD with the targeted DLR loss, run in turn toward each of the "
                       "`n_target_classes` classes with the highest logits (after the true one), each run only on "
                       "the examples still classified correctly. Untargeted in effect: it succeeds when the "
                       "prediction changes."),
    AttackSpec("deepfool", "DeepFool (L2)", deepfool, "l2", _DEEPFOOL_PAPER, "minimal", False, {"norm": "l2"},
               cost_model=_minimal_cost(1), full_name="DeepFool", summary=_DEEPFOOL),
    AttackSpec("deepfool_linf", "DeepFool (L-inf)", deepfool, "linf", _DEEPFOOL_PAPER, "minimal", False,
               {"norm": "linf"}, cost_model=_minimal_cost(1), full_name="DeepFool", summary=_DEEPFOOL),
    AttackSpec("cw_l2", "Carlini-Wagner L2", cw_l2, "l2", "Carlini & Wagner, IEEE S&P 2017", "minimal", True,
               cost_model=_minimal_cost(1), tunable=(_SEARCH_STEPS,), full_name="Carlini-Wagner L2", summary=_CW),
    AttackSpec("ead", "EAD (elastic net)", ead, "l1", "Chen et al., AAAI 2018", "minimal", True,
               cost_model=_minimal_cost(2), tunable=(_SEARCH_STEPS,), full_name="EAD, elastic-net attack",
               summary=_EAD),
    *[AttackSpec(name, f"FAB ({title})", fab, norm, _CROCE, "minimal", True, {"norm": norm}, cost_model=_boundary_cost,
                 full_name="FAB, Fast Adaptive Boundary attack", summary=_FAB)
      for name, title, norm in [("fab", "L-inf", "linf"), ("fab_l2", "L2", "l2"), ("fab_l1", "L1", "l1")]],
    AttackSpec("autoattack_standard", "AutoAttack standard", autoattack, "linf", _CROCE, "ensemble", False,
               {"version": "standard"}, cost_model=_chain_cost, summary=_AUTOATTACK),
    AttackSpec("autoattack_fast", "AutoAttack fast", autoattack, "linf", f"{_CROCE} (ours: APGD-CE, APGD-T×3)",
               "ensemble", False, {"version": "fast"}, cost_model=_chain_cost, summary=_AUTOATTACK),
    AttackSpec("square", "Square (L-inf)", square, "linf", "Andriushchenko et al., ECCV 2020", "score", True,
               per_example_eps=True, cost_model=_query_cost,
               tunable=(Tunable("n_queries", "Queries per image", 10, 20000),), full_name="Square Attack, L-inf",
               summary="Random search that only reads the model's outputs: it starts from vertical stripes of +-eps, "
                       "then repeatedly proposes a random square window (side shrinking on a fixed schedule) set to "
                       "+-eps per channel and keeps it when the margin loss decreases. No gradient is used, so masked "
                       "or obfuscated gradients do not stop it: if Square beats PGD, gradients are masked."),
]}


def get_attack(name: str) -> AttackSpec:
    try:
        return ATTACKS[name]
    except KeyError:
        raise ValueError(f"Unknown attack {name!r}; choose one of {sorted(ATTACKS)}") from None


__all__ = ["ATTACKS", "AttackCost", "AttackSpec", "NORMS", "NORM_SYMBOLS", "Tunable", "apgd", "apgd_t", "cw_l2",
           "deepfool", "ead", "eps_ceiling", "fab", "fgsm", "flat_norm", "get_attack", "pgd", "square", "stage_cost"]
