"""Accuracy under attack: over an eps grid, and per example the smallest eps that breaks it.

The per-example minimal eps is what makes an eps slider instant: once each test image's smallest breaking eps is
known, accuracy at any eps is ``mean(min_eps > eps)``, a lookup (:func:`accuracy_at`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import torch

from ..attacks import ATTACKS, flat_norm, get_attack
from ..tensors import ce_loss, eval_mode, input_gradient, predict
from ..device import channels_last_copy
from .progress import CountedModel, WorkMeter, pass_overhead, worst_search

# Images per attack call: large enough to keep the CPU busy, small enough that the
# progress callback fires often and memory stays low for DeepFool's per-class gradients.
ATTACK_BATCH = 500


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
    and the examples it crafted. ``eps``: a number, or one per example where ``spec.per_example_eps``."""
    eps = eps if isinstance(eps, torch.Tensor) else float(eps)
    if target is None:
        x_adv = spec(crafter, x, y, eps=eps, seed=seed, **attack_kwargs)
        return predict(judge, x_adv) != y, x_adv
    x_adv = spec(crafter, x, y, eps=eps, seed=seed, targeted=True, target=target, **attack_kwargs)
    return predict(judge, x_adv) == target, x_adv


def minimal_eps(model, x: torch.Tensor, y: torch.Tensor, *, attack: str, eps_max: float | None = None,
                bisection_steps: int = 7, grid_points: int = 100, seed: int = 0, batch_size: int = ATTACK_BATCH,
                target: int | torch.Tensor | None = None, on_progress: Callable[[float], None] | None = None,
                return_adversarial: bool = False, **attack_kwargs):
    """Per example, the smallest eps (in the attack's norm) at which ``attack`` changes the prediction.

    0 for examples misclassified without attack; ``inf`` where nothing up to ``eps_max`` works.
    - minimal-perturbation attacks (DeepFool, C&W, EAD): the norm of the perturbation found;
    - single-step attacks (FGSM): the smallest of ``grid_points`` evenly spaced eps values that fools the model.
      FGSM's direction sign(grad) does not depend on eps, so the grid costs one gradient and one forward
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
        meter = WorkMeter(on_progress, pass_overhead(x.device))
        per_call = spec.cost(attack_kwargs, grid_points=grid_points).forwards
        sizes = [min(batch_size, len(x) - i) for i in range(0, len(x), batch_size)]
        # A batch not started yet: its clean pass, then the worst case of its whole search.
        batch_worst = [n + meter.overhead + worst_search(spec, n, n, 1, bisection_steps, per_call, meter.overhead, True)
                       for n in sizes]
    # Attacks run on a channels-last copy (the same network, faster passes on a CPU); every verdict is the model's
    # own, so a point at the decision boundary counts as the user's model reads it, whatever the float rounding.
    crafter = channels_last_copy(model)
    counted = meter is not None and isinstance(model, torch.nn.Module)
    with eval_mode(model), eval_mode(crafter):
        attacked = CountedModel(crafter, meter) if counted else crafter
        judge = CountedModel(model, meter) if counted else model
        for b, i in enumerate(range(0, len(x), batch_size)):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            # The meter's plan for this batch's attack calls: what they may cost, plus the later batches' worst case.
            plan = None if meter is None else partial(meter.plan_with_later, sum(batch_worst[b + 1 :]))

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
    the rest of the batch (see :class:`WorkMeter`). ``witness``, when given (a copy of ``x``), receives in place
    the example that set each finite, non-zero eps."""

    def keep(index, x_adv):
        if witness is not None:
            witness[index] = x_adv.detach().to(witness.dtype)

    overhead = model.meter.overhead if isinstance(model, CountedModel) else 1.0
    per_call = spec.cost(attack_kwargs, grid_points=grid_points).forwards

    def work(images, passes=per_call):
        return passes * (images + overhead)

    def planned(call, after):
        if plan is not None:
            plan(call, after)

    def worst(n, found, groups, rounds, with_first_call=False):
        return worst_search(spec, n, found, groups, rounds, per_call, overhead, with_first_call)

    n = len(x)
    planned(work(n, passes=1), worst(n, n, 1, bisection_steps, True))
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
        inf = torch.tensor(float("inf"), device=x.device)
        result[todo[fooled]] = torch.where(norms[fooled] <= eps_max, norms[fooled], inf)
        within = fooled & (norms <= eps_max)
        keep(todo[within], x_adv[within])
        planned(0.0, 0.0)
        return result
    if spec.single_step:
        planned(work(len(todo)), 0.0)
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

    planned(work(len(todo)), worst(0, len(todo), 1, bisection_steps))
    fooled, x_adv = _fooled(model, judge, spec, x[todo], y[todo], eps_max, seed, attack_kwargs, tg(todo))
    found = todo[fooled]
    keep(found, x_adv[fooled])
    lower = torch.zeros(len(x), device=x.device)
    upper = torch.full((len(x),), float(eps_max), device=x.device)
    for s in range(bisection_steps):
        mid = (lower + upper) / 2
        if spec.per_example_eps and len(found):
            # One call for every bracket of the round, each example at its own eps: the round costs one attack
            # on all the examples left, not one per bracket, and late rounds (up to 2^s brackets of a few
            # images each) no longer pay a full attack's fixed cost per bracket. Square's 1,000 queries per call made
            # the Attack page's comparison take an hour on 100 images that way.
            planned(work(len(found)), worst(0, len(found), 1, bisection_steps - s - 1))
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
            planned(work(len(group)), rest + worst(0, len(found), 2 * len(values), bisection_steps - s - 1))
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
    if "stop_on_success" in spec.resolve():
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
