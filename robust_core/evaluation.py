"""Robustness evaluation: accuracy under attack over an eps grid, and per-example minimal eps.

The per-example minimal eps is what makes an eps slider instant: once each test image's
smallest breaking eps is known, accuracy at any eps is ``mean(min_eps > eps)``, a lookup.

    python -m robust_core.evaluate --model <id> --attack pgd --eps 0.05:0.3:0.05
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from .attacks import ATTACKS, apgd, flat_norm, get_attack, pgd, square
from .attacks._common import eval_mode, predict
from .device import channels_last_copy
from .file_locks import atomic_write_text, compute_once
from .masking import (  # noqa: F401  (re-exported: the comparison's rule lives in its own module)
    MASKING_EXPLANATION,
    MASKING_SECTION,
    SINGLE_STEP_TRAINING,
    attack_comparison_notes,
    attack_comparison_warnings,
    single_step_masking,
    training_method_of,
)

# Images per attack call: large enough to keep the CPU busy, small enough that the
# progress callback fires often and memory stays low for DeepFool's per-class gradients.
ATTACK_BATCH = 500
# The Attack page's defaults: its largest eps per norm, and each attack's parameters as its controls start. The page,
# the shipped evaluations (robust_core.precomputed) and sweeps compute with these, so they share cache entries.
PAGE_EPS_MAX = {"linf": 0.4, "l2": 4.0, "l1": 40.0}
PAGE_ATTACK_PARAMS: dict[str, dict[str, Any]] = {
    "fgsm": {}, "pgd": {"steps": 40, "restarts": 1}, "pgd_l2": {"steps": 40, "restarts": 1},
    "apgd_ce": {"steps": 100}, "apgd_dlr": {"steps": 100}, "apgd_t": {"steps": 100},
    "square": {"n_queries": 1000}, "cw_l2": {"steps": 100}, "ead": {"steps": 100},
}
# The attack comparison's search for the black-box Square attack: 3 bisection steps, so its accuracy is measured at
# every eps_max / 8 (0.05 for L-inf) instead of every eps_max / 128. Why: every bisection round costs each image that
# stays robust its full 1,000 queries, and about half the images stay robust in each round; 3 rounds instead of 7 made
# the comparison's Square 2.5-3.2x faster on the FGSM-AT CNN (500 images, 1 thread; benchmarks/attack_speed.py
# --comparison), its accuracy at every 0.05 within the search's seed-to-seed noise of the 7-step one.
# Square is there to expose masked gradients, which a 0.05 grid shows; the page says so and draws it on its grid.
COMPARISON_SEARCH: dict[str, dict[str, Any]] = {"square": {"bisection_steps": 3}}


def comparison_params(attack: str) -> dict[str, Any]:
    """The attack comparison's parameters for ``attack`` (the cache key's): the page's largest eps for its norm, the
    page's defaults, and :data:`COMPARISON_SEARCH`'s coarse search for black-box attacks."""
    return {"eps_max": PAGE_EPS_MAX[get_attack(attack).norm], **PAGE_ATTACK_PARAMS.get(attack, {}),
            **COMPARISON_SEARCH.get(attack, {})}


def measured_eps_grid(params: dict[str, Any], default: Sequence[float]) -> list[float]:
    """The eps values at which a minimal-eps result computed with ``params`` is an accuracy measurement.

    A coarse bisection (fewer than 7 steps) brackets each threshold only to eps_max / 2^steps: between those values
    its accuracy is the value below, a staircase that reads too high, so it is shown and compared on its own grid.
    Finer searches are read on ``default`` (the page's 41 frames)."""
    steps = params.get("bisection_steps")
    if steps is None or steps >= 7 or "eps_max" not in params:
        return [float(e) for e in default]
    return [round(params["eps_max"] * k / 2**steps, 9) for k in range(2**steps + 1)]


# Attacks that take one eps per example (a tensor): minimal_eps' bisection runs each round as one call.
PER_EXAMPLE_EPS = frozenset({pgd, apgd, square})
# Bumped per attack when its code changes what it finds, so that only its cached results are recomputed (the shipped
# evaluations of the other attacks stay valid): DeepFool no longer carries the clipped-off part of its steps, C&W
# warm-starts its rounds (both found far more of a robust model's adversarial examples). PGD draws its random starts
# per grouped bisection round (one eps per example), so its per-image results moved by about one bisection tick;
# APGD halves its step where Croce & Hein's schedule says and restarts with fresh momentum.
ATTACK_CODE_VERSIONS = {"deepfool": 2, "deepfool_linf": 2, "cw_l2": 2, "pgd": 2, "pgd_l2": 2,
                        "apgd_ce": 2, "apgd_dlr": 2, "apgd_t": 2}
# Bumped when minimal_eps' search changes: cached results of the old search are not reused.
MINIMAL_EPS_VERSION = 2


def robust_accuracy(model, x: torch.Tensor, y: torch.Tensor, *, attack: str, eps_grid: Sequence[float], seed: int = 0,
                    batch_size: int = ATTACK_BATCH, on_progress: Callable[[float], None] | None = None,
                    **attack_kwargs) -> list[float]:
    """Accuracy of ``model`` on (x, y) under ``attack`` at each eps of ``eps_grid`` (eps = 0 is clean accuracy)."""
    spec = get_attack(attack)
    accuracies = []
    total = len(eps_grid) * math.ceil(len(x) / batch_size)
    # Crafted on a channels-last copy (the same network, faster passes on a CPU), judged by the model itself:
    # a point at the decision boundary counts as the user's model reads it, whatever the float rounding.
    crafter = channels_last_copy(model)
    done = 0
    with eval_mode(model), eval_mode(crafter):
        for eps in eps_grid:
            correct = 0
            for i in range(0, len(x), batch_size):
                xb, yb = x[i : i + batch_size], y[i : i + batch_size]
                xa = xb if eps == 0 else spec(crafter, xb, yb, eps=float(eps), seed=seed, **attack_kwargs)
                correct += int((predict(model, xa) == yb).sum())
                done += 1
                if on_progress:
                    on_progress(done / total)
            accuracies.append(correct / len(x))
    return accuracies


def _fooled(crafter, judge, spec, x, y, eps, seed, attack_kwargs, target=None):
    """(hit, x_adv): whether the attack crafted on ``crafter`` fools ``judge`` (the same network; see minimal_eps),
    and the examples it crafted. ``eps``: a number, or one per example for the attacks of PER_EXAMPLE_EPS."""
    eps = eps if isinstance(eps, torch.Tensor) else float(eps)
    if target is None:
        x_adv = spec(crafter, x, y, eps=eps, seed=seed, **attack_kwargs)
        return predict(judge, x_adv) != y, x_adv
    x_adv = spec(crafter, x, y, eps=eps, seed=seed, targeted=True, target=target, **attack_kwargs)
    return predict(judge, x_adv) == target, x_adv


def _plan_with_later(meter, later: float, call: float, after: float) -> None:
    meter.plan(call, after + later)


class _WorkMeter:
    """Progress of a minimal-eps search in units of work: done / (done + worst case of what is left).

    The work is counted as it happens, not assumed: every forward pass the attacks make adds its
    images (plus a per-pass overhead), so attack calls that stop early because every image broke and
    calls whose survivors need every step advance the bar by what they really cost. What is left is
    bounded from above (every image runs every step, every bisection bracket splits in two), so the
    fraction never runs ahead of the work: an ETA from it errs long, then shortens. Counting bisection
    rounds instead said 7/8 done on a robust model before its slowest rounds (survivors run every
    step, late rounds split into many small groups) had begun.
    """

    def __init__(self, on_progress: Callable[[float], None], overhead: float):
        self.on_progress, self.overhead = on_progress, overhead
        self.done = 0.0  # work counted so far
        self.call_left = 0.0  # worst case left of the attack call under way
        self.after = 0.0  # worst case of everything after that call
        self.reported = 0.0

    def plan(self, call: float, after: float) -> None:
        """A new attack call starts: its worst-case work and the worst case of all that follows it."""
        self.call_left, self.after = call, after
        self.report()

    def count(self, images: int) -> None:
        work = images + self.overhead
        self.done += work
        self.call_left = max(self.call_left - work, 0.0)
        self.report(step=0.002)  # a report per forward pass would flood a progress bar with messages

    def report(self, step: float = 0.0, final: bool = False) -> None:
        total = self.done + self.call_left + self.after
        fraction = 1.0 if final or total <= 0 else min(self.done / total, 1.0)
        # Monotone even where a call did more passes than its plan (APGD's extra gradient at a restart).
        if final or fraction > self.reported + step:
            self.reported = max(fraction, self.reported)
            self.on_progress(self.reported)


class _Counted(torch.nn.Module):
    """The model, counting into a :class:`_WorkMeter` the images of every forward pass the attacks make."""

    def __init__(self, model, meter: _WorkMeter):
        super().__init__()
        self.model, self.meter = model, meter
        self.train(model.training)  # eval_mode() on this wrapper then restores the model's own mode

    def forward(self, x):
        self.meter.count(len(x))
        return self.model(x)


def _pass_overhead(device: torch.device) -> float:
    """Fixed cost of one forward pass in images: on a CPU a pass costs about its batch size; on a GPU a
    small batch costs nearly as much as a full one, so the many small groups of late bisection rounds count."""
    return 1.0 if device.type == "cpu" else 256.0


def _worst_forwards(spec, grid_points: int, attack_kwargs: dict) -> int:
    """Forward passes one image costs in one attack call of the search when nothing stops early: what an
    image that survives really costs (robust models have many), an upper bound for one that breaks."""
    import inspect

    from .attacks.gradient import _checkpoints

    defaults = {k: v.default for k, v in inspect.signature(spec.fn).parameters.items() if v.default is not inspect.Parameter.empty}
    p = {**defaults, **spec.defaults, **attack_kwargs}
    steps, restarts = int(p.get("steps") or 1), int(p.get("restarts") or 1)
    if spec.name == "fgsm":
        return grid_points + 1  # one gradient, then one forward pass per grid point
    if spec.name.startswith("fab"):
        return 2 * int(p.get("n_iter") or 100) * restarts + 2  # a forward and a Jacobian pass per iteration
    if spec.kind == "minimal":
        return steps * int(p.get("binary_search_steps") or 1) * (2 if spec.name == "ead" else 1) + 2
    if spec.kind == "score":
        return int(p.get("n_queries") or 1) + 2
    per_run = steps + 2 + (len(_checkpoints(steps)) if spec.name.startswith("apgd") else 0)
    runs = restarts * (int(p.get("n_target_classes") or 9) if spec.name == "apgd_t" else 1)
    return runs * per_run + 2


def _worst_search(spec, n: int, found: int, groups: int, rounds: int, per_call: int, overhead: float,
                  with_first_call: bool) -> float:
    """Worst-case work of a search's remaining attack calls: (with_first_call) one call on the ``n`` images
    at eps_max, then ``rounds`` bisection rounds over ``found`` images whose ``groups`` brackets can each
    split in two per round (one attack call per bracket)."""
    if spec.kind == "minimal" or spec.name == "fgsm":
        return per_call * (n + overhead) if with_first_call else 0.0
    work = per_call * (n + overhead) if with_first_call else 0.0
    for r in range(rounds):
        work += per_call * (found + overhead * min(found, groups * 2**r))
    return work


def minimal_eps(model, x: torch.Tensor, y: torch.Tensor, *, attack: str, eps_max: float | None = None,
                bisection_steps: int = 7, grid_points: int = 100, seed: int = 0, batch_size: int = ATTACK_BATCH,
                target: int | torch.Tensor | None = None, on_progress: Callable[[float], None] | None = None,
                return_adversarial: bool = False, **attack_kwargs):
    """Per example, the smallest eps (in the attack's norm) at which ``attack`` changes the prediction.

    0 for examples misclassified without attack; ``inf`` where nothing up to ``eps_max`` works.
    - minimal-perturbation attacks (DeepFool, C&W, EAD): the norm of the perturbation found;
    - FGSM: the smallest of ``grid_points`` evenly spaced eps values that fools the model. FGSM's
      direction sign(grad) does not depend on eps, so the grid costs one gradient and one forward
      pass per point; a grid, not a bisection, because FGSM's success is not monotone in eps.
    - iterative attacks (PGD, APGD, Square): one attack at ``eps_max`` (unbroken examples are
      ``inf``), then ``bisection_steps`` bisections of [0, eps_max] (resolution eps_max / 2^steps;
      7 steps give 0.003 for eps_max = 0.4). Examples sharing a bracket share one attack call.
      Bisection needs about half the attack calls of a grid scan of the same resolution, and most of
      its calls sit near each example's threshold, where the attack stops early on success.

    With ``target`` (a class, or one per example) the attack runs targeted and an example counts as
    broken when it is classified as its target ("make this 7 read as a 3"); examples whose true
    class is the target get 0. Only budgeted attacks that support targets (spec.targeted) take one.

    With ``return_adversarial``, returns ``(eps, x_adv)``: ``x_adv[i]`` is the very example that set ``eps[i]`` (the
    model read it as broken), ``x[i]`` itself where eps is 0 or inf. A search's answer is an upper bound, and this is
    its witness: replaying the attack with another random start need not find it again.
    """
    spec = get_attack(attack)
    if target is not None:
        if not spec.targeted or spec.kind == "minimal":
            targeted = [a for a, sp in ATTACKS.items() if sp.targeted and sp.kind != "minimal"]
            raise ValueError(f"{spec.title} has no targeted budgeted mode here; use one of {targeted}")
        target = torch.as_tensor(target, device=y.device, dtype=torch.long).expand(len(y)).clone()
    if eps_max is None:
        eps_max = {"linf": 0.5, "l2": 5.0, "l1": 50.0}[spec.norm]
    out = torch.empty(len(x), device=x.device)
    witnesses = x.detach().clone() if return_adversarial else None
    meter = None
    if on_progress is not None:
        meter = _WorkMeter(on_progress, _pass_overhead(x.device))
        per_call = _worst_forwards(spec, grid_points, attack_kwargs)
        sizes = [min(batch_size, len(x) - i) for i in range(0, len(x), batch_size)]
        # A batch not started yet: its clean pass, then the worst case of its whole search.
        batch_worst = [n + meter.overhead + _worst_search(spec, n, n, 1, bisection_steps, per_call, meter.overhead, True)
                       for n in sizes]
    # Attacks run on a channels-last copy (the same network, faster passes on a CPU); every verdict is the model's
    # own, so a point at the decision boundary counts as the user's model reads it, whatever the float rounding.
    crafter = channels_last_copy(model)
    counted = meter is not None and isinstance(model, torch.nn.Module)
    with eval_mode(model), eval_mode(crafter):
        attacked = _Counted(crafter, meter) if counted else crafter
        judge = _Counted(model, meter) if counted else model
        for b, i in enumerate(range(0, len(x), batch_size)):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            # The meter's plan for this batch's attack calls: what they may cost, plus the later batches' worst case.
            plan = None if meter is None else partial(_plan_with_later, meter, sum(batch_worst[b + 1 :]))

            tb = target[i : i + batch_size] if target is not None else None
            wb = witnesses[i : i + batch_size] if witnesses is not None else None
            out[i : i + batch_size] = _minimal_eps_batch(attacked, judge, spec, xb, yb, eps_max, grid_points,
                                                         bisection_steps, seed, attack_kwargs, plan, tb, wb)
    if meter is not None:
        meter.report(final=True)
    return (out.detach(), witnesses) if return_adversarial else out.detach()


def _minimal_eps_batch(model, judge, spec, x, y, eps_max, grid_points, bisection_steps, seed, attack_kwargs, plan=None,
                       target=None, witness=None):
    """One batch of :func:`minimal_eps`: attacks run on ``model``, ``judge`` says what is misclassified.
    ``plan(call, after)``, when given, is told before each attack call the worst-case work of that call and of
    the rest of the batch (see :class:`_WorkMeter`). ``witness``, when given (a copy of ``x``), receives in place
    the example that set each finite, non-zero eps."""

    def keep(index, x_adv):
        if witness is not None:
            witness[index] = x_adv.detach().to(witness.dtype)

    overhead = model.meter.overhead if isinstance(model, _Counted) else 1.0
    per_call = _worst_forwards(spec, grid_points, attack_kwargs)

    def work(images, passes=per_call):
        return passes * (images + overhead)

    def planned(call, after):
        if plan is not None:
            plan(call, after)

    n = len(x)
    planned(work(n, passes=1), _worst_search(spec, n, n, 1, bisection_steps, per_call, overhead, True))
    clean_wrong = predict(judge, x) != y if target is None else predict(judge, x) == target
    result = torch.full((len(x),), float("inf"), device=x.device)
    result[clean_wrong] = 0.0
    todo = (~clean_wrong).nonzero().flatten()
    if len(todo) == 0:
        planned(0.0, 0.0)
        return result
    if spec.kind == "minimal":
        planned(work(len(todo)), 0.0)
        x_adv = spec(model, x[todo], y[todo], seed=seed, **attack_kwargs)
        fooled = predict(judge, x_adv) != y[todo]
        norms = flat_norm(x_adv - x[todo], spec.norm)
        result[todo[fooled]] = torch.where(norms[fooled] <= eps_max, norms[fooled], torch.tensor(float("inf"), device=x.device))
        within = fooled & (norms <= eps_max)
        keep(todo[within], x_adv[within])
        planned(0.0, 0.0)
        return result
    if spec.name == "fgsm":
        planned(work(len(todo)), 0.0)
        from .attacks._common import ce_loss, input_gradient

        t = target[todo] if target is not None else None
        _, grad = input_gradient(ce_loss(model, y[todo], t), x[todo])
        direction = grad.sign()
        # Python floats, not a float32 linspace: a grid value must equal the eps a user types (0.05, not 0.0500000007).
        grid = [round(eps_max * (k + 1) / grid_points, 9) for k in range(grid_points)]
        for k, eps in enumerate(grid):
            remaining = torch.isinf(result[todo])
            if not remaining.any():
                break
            idx = remaining.nonzero().flatten()
            x_adv = (x[todo[idx]] + eps * direction[idx]).clamp(0, 1)
            pred = predict(judge, x_adv)
            fooled = pred != y[todo[idx]] if t is None else pred == t[idx]
            result[todo[idx[fooled]]] = eps
            keep(todo[idx[fooled]], x_adv[fooled])
        planned(0.0, 0.0)
        return result

    def tg(index):
        return target[index] if target is not None else None

    planned(work(len(todo)), _worst_search(spec, 0, len(todo), 1, bisection_steps, per_call, overhead, False))
    fooled, x_adv = _fooled(model, judge, spec, x[todo], y[todo], eps_max, seed, attack_kwargs, tg(todo))
    found = todo[fooled]
    keep(found, x_adv[fooled])
    lower = torch.zeros(len(x), device=x.device)
    upper = torch.full((len(x),), float(eps_max), device=x.device)
    for s in range(bisection_steps):
        mid = (lower + upper) / 2
        if spec.fn in PER_EXAMPLE_EPS and len(found):
            # One call for every bracket of the round, each example at its own eps: the round costs one attack
            # on all the examples left, not one per bracket, and late rounds (up to 2^s brackets of a few
            # images each) no longer pay a full attack's fixed cost per bracket. Square's 1,000 queries per call made
            # the Attack page's comparison take an hour on 100 images that way.
            planned(work(len(found)), _worst_search(spec, 0, len(found), 1, bisection_steps - s - 1, per_call, overhead,
                                                    False))
            hit, x_adv = _fooled(model, judge, spec, x[found], y[found], mid[found], seed, attack_kwargs, tg(found))
            upper[found[hit]] = mid[found[hit]]
            keep(found[hit], x_adv[hit])
            lower[found[~hit]] = mid[found[~hit]]
            continue
        values = mid[found].unique().tolist()
        groups = [found[mid[found] == value] for value in values]
        for g, (value, group) in enumerate(zip(values, groups)):  # one attack call per shared bracket
            # After this call: the round's other groups, then later rounds whose brackets can each split in two.
            rest = sum(work(len(other)) for other in groups[g + 1 :])
            planned(work(len(group)), rest + _worst_search(spec, 0, len(found), 2 * len(values), bisection_steps - s - 1,
                                                     per_call, overhead, False))
            hit, x_adv = _fooled(model, judge, spec, x[group], y[group], value, seed, attack_kwargs, tg(group))
            upper[group[hit]] = value
            keep(group[hit], x_adv[hit])
            lower[group[~hit]] = value
    planned(0.0, 0.0)
    result[found] = upper[found]
    return result


def transfer_minimal_eps(source_model, target_model, x: torch.Tensor, y: torch.Tensor, *, attack: str = "pgd",
                         eps_max: float = 0.4, grid_points: int = 8, seed: int = 0, batch_size: int = ATTACK_BATCH,
                         on_progress: Callable[[float], None] | None = None, **attack_kwargs) -> torch.Tensor:
    """Per example, the smallest of ``grid_points`` eps values at which an adversarial example crafted on
    ``source_model`` (white-box) fools ``target_model``: a black-box transfer attack on the target.

    A grid, not a bisection: transfer success is not monotone in eps. Iterative attacks run every step
    (no early stop at the source's boundary) so that the examples carry the source's full loss ascent,
    which transfers better. 0 where the target is wrong without attack, ``inf`` where no grid eps works.
    """
    spec = get_attack(attack)
    if spec.kind == "minimal":
        raise ValueError("transfer needs a budgeted attack (FGSM, PGD, APGD, Square)")
    if "stop_on_success" in spec.fn.__code__.co_varnames:
        attack_kwargs = {"stop_on_success": False, **attack_kwargs}
    grid = [round(eps_max * (k + 1) / grid_points, 9) for k in range(grid_points)]
    result = torch.full((len(x),), float("inf"), device=x.device)
    source_model = channels_last_copy(source_model)  # crafts faster on a CPU; the target, judging, stays itself
    with eval_mode(source_model), eval_mode(target_model):
        result[predict(target_model, x) != y] = 0.0
        total = grid_points * math.ceil(len(x) / batch_size)
        done = 0
        for eps in grid:
            for i in range(0, len(x), batch_size):
                idx = torch.arange(i, min(i + batch_size, len(x)), device=x.device)
                idx = idx[torch.isinf(result[idx])]
                if len(idx):
                    x_adv = spec(source_model, x[idx], y[idx], eps=eps, seed=seed, **attack_kwargs)
                    result[idx[predict(target_model, x_adv) != y[idx]]] = eps
                done += 1
                if on_progress:
                    on_progress(done / total)
    return result.detach()


def accuracy_at(min_eps: torch.Tensor, eps_values: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Accuracy at each eps from per-example minimal eps: the share of examples needing more than eps."""
    eps_values = torch.as_tensor(eps_values, dtype=min_eps.dtype, device=min_eps.device)
    return (min_eps[None, :] > eps_values[:, None]).float().mean(1)


def perturbation_stats(min_eps: torch.Tensor) -> dict[str, float]:
    """Median and quartiles of the finite, non-zero minimal perturbations (examples the attack broke)."""
    finite = min_eps[torch.isfinite(min_eps) & (min_eps > 0)]
    if len(finite) == 0:
        return {"n": 0, "q25": float("nan"), "median": float("nan"), "q75": float("nan")}
    q = torch.quantile(finite.float(), torch.tensor([0.25, 0.5, 0.75], device=finite.device))
    return {"n": int(len(finite)), "q25": float(q[0]), "median": float(q[1]), "q75": float(q[2])}


# ---- sanity checks (AutoAttack's spirit: say when an evaluation cannot be trusted) ---------------
def model_sanity_warnings(model, x: torch.Tensor, y: torch.Tensor, *, zero_grad_share: float = 0.1) -> list[str]:
    """Warnings about the model itself: probabilities passed as logits, zero input gradients."""
    from .attacks._common import ce_loss, input_gradient

    warnings = []
    with eval_mode(model):
        with torch.no_grad():
            out = model(x)
        if ((out >= 0) & (out <= 1)).all() and torch.allclose(out.sum(1), torch.ones(len(out), device=out.device), atol=1e-3):
            warnings.append("The model's outputs are non-negative and sum to 1: it returns probabilities, not logits. "
                            "Cross-entropy attacks then see a flattened loss and underestimate its weakness; remove the softmax.")
        _, grad = input_gradient(ce_loss(model, y), x)
    zero = (grad.flatten(1).abs().amax(1) == 0).float().mean().item()
    if zero > zero_grad_share:
        warnings.append(f"The loss gradient is exactly zero for {100 * zero:.0f}% of the images: gradient attacks cannot move "
                        "them (gradient masking, e.g. saturated or quantised layers). Check with the Square attack.")
    return warnings


def sanity_warnings(min_eps_by_model: dict[str, torch.Tensor], *, attack: str, eps_max: float) -> list[str]:
    """Warnings from one attack's results: accuracy that does not fall to zero as eps grows large."""
    spec = get_attack(attack)
    large = {"linf": 0.3, "l2": 3.0, "l1": 30.0}[spec.norm]
    warnings = []
    if spec.kind != "minimal" and eps_max >= large:
        for name, values in min_eps_by_model.items():
            acc = float(accuracy_at(values, [eps_max])[0])
            if acc > 0.1:
                warnings.append(
                    f"{name}: {100 * acc:.0f}% accuracy remains at ε = {eps_max:g} ({spec.norm.upper()}), a perturbation large "
                    "enough to draw another digit. Either the attack is too weak (more steps, restarts, APGD) or gradients "
                    "are masked: compare with the Square attack, which uses no gradient.")
    return warnings


# ---- cache -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalKey:
    model_id: str
    attack: str
    params: tuple  # sorted (name, value) pairs
    n_examples: int
    seed: int

    def digest(self) -> str:
        text = json.dumps([self.model_id, self.attack, list(self.params), self.n_examples, self.seed], default=str)
        if MINIMAL_EPS_VERSION > 1:  # results of an older search algorithm are recomputed, not reused
            text += f"|v{MINIMAL_EPS_VERSION}"
        if self.attack in ATTACK_CODE_VERSIONS:  # nor results of an attack whose code has changed since
            text += f"|{self.attack}-v{ATTACK_CODE_VERSIONS[self.attack]}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class EvaluationCache:
    """Per-example minimal eps cached in memory and on disk beside the model: never computed twice, not even by two
    processes sharing the store (:meth:`compute`: the second waits for the first's result, then reads it).

    Files: ``<store>/<dataset>/<model_id>/evaluations/<digest>.json`` holding the key and the values.
    """

    def __init__(self, store):
        self.store = store
        self._memory: dict[EvalKey, torch.Tensor] = {}

    def _path(self, key: EvalKey) -> Path:
        return self.store.get(key.model_id).path / "evaluations" / f"{key.digest()}.json"

    def get(self, key: EvalKey) -> torch.Tensor | None:
        if key in self._memory:
            return self._memory[key]
        path = self._path(key)
        if path.is_file():
            try:
                # JSON has no infinity: unbroken examples are stored as the string "inf".
                values = torch.tensor([float(v) for v in json.loads(path.read_text())["min_eps"]], dtype=torch.float32)
            except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
                return None  # an unreadable cache file is recomputed, never trusted
            self._memory[key] = values
            return values
        return None

    def put(self, key: EvalKey, min_eps: torch.Tensor) -> None:
        values = min_eps.detach().cpu().float()
        self._memory[key] = values
        path = self._path(key)
        path.parent.mkdir(exist_ok=True)
        payload = {"model_id": key.model_id, "attack": key.attack, "params": dict(key.params),
                   "n_examples": key.n_examples, "seed": key.seed,
                   "min_eps": [v if math.isfinite(v) else "inf" for v in values.tolist()]}
        atomic_write_text(path, json.dumps(payload))  # a reader, in any process, sees no file or the whole one

    def compute(self, key: EvalKey, fn: Callable[[], torch.Tensor], *,
                on_progress: Callable[[float], None] | None = None) -> torch.Tensor:
        """The cached values of ``key``, else ``fn()`` stored under it, computed under the key's lock in the store
        (:func:`robust_core.file_locks.compute_once`): a process (or thread) asking for the same key meanwhile waits,
        reporting 0 to ``on_progress`` (a cancelled job's progress callback raises and stops its wait), then reads
        the result. A holder that dies leaves the lock free and nothing stored: the next one computes."""
        def run() -> torch.Tensor:
            values = fn()
            self.put(key, values)
            return values.cpu()

        waiting = (lambda: on_progress(0.0)) if on_progress is not None else None
        return compute_once(self.store.root, f"eval-{key.model_id}-{key.digest()}", read=lambda: self.get(key),
                            compute=run, while_waiting=waiting)


def cached_minimal_eps(store, cache: EvaluationCache, model_id: str, x, y, *, attack: str, seed: int = 0,
                       on_progress=None, **params) -> torch.Tensor:
    """``minimal_eps`` for stored model ``model_id`` on the first len(x) test images, through the cache."""
    key = EvalKey(model_id, attack, tuple(sorted(params.items())), len(x), seed)
    return cache.compute(key, lambda: minimal_eps(store.load(model_id, device=x.device), x, y, attack=attack, seed=seed,
                                                  on_progress=on_progress, **params), on_progress=on_progress)


def cached_transfer_eps(store, cache: EvaluationCache, source_id: str, target_id: str, x, y, *, attack: str = "pgd",
                        seed: int = 0, on_progress=None, **params) -> torch.Tensor:
    """``transfer_minimal_eps`` from stored ``source_id`` to stored ``target_id``, cached beside the target."""
    key = EvalKey(target_id, f"transfer:{source_id}:{attack}", tuple(sorted(params.items())), len(x), seed)
    return cache.compute(key, lambda: transfer_minimal_eps(
        store.load(source_id, device=x.device), store.load(target_id, device=x.device), x, y, attack=attack, seed=seed,
        on_progress=on_progress, **params), on_progress=on_progress)


def parse_eps_grid(text: str) -> list[float]:
    """'0.05:0.3:0.05' (start:stop:step, stop included) or '0.1,0.2,0.3'."""
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            n = int(math.floor((stop - start) / step + 1e-9)) + 1
            return [round(start + i * step, 10) for i in range(n)]
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"eps grid {text!r} is not 'start:stop:step' (e.g. 0.05:0.3:0.05) or a comma list") from None


__all__ = ["ATTACKS", "MASKING_EXPLANATION", "MASKING_SECTION", "SINGLE_STEP_TRAINING", "attack_comparison_notes",
           "attack_comparison_warnings", "single_step_masking", "training_method_of", "cached_transfer_eps",
           "transfer_minimal_eps", "model_sanity_warnings", "sanity_warnings", "EvalKey", "EvaluationCache",
           "accuracy_at", "cached_minimal_eps", "minimal_eps", "parse_eps_grid", "perturbation_stats",
           "robust_accuracy"]
