"""Robustness evaluation: accuracy under attack over an eps grid, and per-example minimal eps.

The per-example minimal eps is what makes an eps slider instant: once each test image's
smallest breaking eps is known, accuracy at any eps is ``mean(min_eps > eps)``, a lookup.

    python -m robust_core.evaluate --model <id> --attack pgd --eps 0.05:0.3:0.05
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .attacks import ATTACKS, flat_norm, get_attack
from .attacks._common import eval_mode, predict

# Images per attack call: large enough to keep the CPU busy, small enough that the
# progress callback fires often and memory stays low for DeepFool's per-class gradients.
ATTACK_BATCH = 500
# Bumped when minimal_eps' search changes: cached results of the old search are not reused.
MINIMAL_EPS_VERSION = 2


def robust_accuracy(model, x: torch.Tensor, y: torch.Tensor, *, attack: str, eps_grid: Sequence[float], seed: int = 0,
                    batch_size: int = ATTACK_BATCH, on_progress: Callable[[float], None] | None = None,
                    **attack_kwargs) -> list[float]:
    """Accuracy of ``model`` on (x, y) under ``attack`` at each eps of ``eps_grid`` (eps = 0 is clean accuracy)."""
    spec = get_attack(attack)
    accuracies = []
    total = len(eps_grid) * math.ceil(len(x) / batch_size)
    done = 0
    with eval_mode(model):
        for eps in eps_grid:
            correct = 0
            for i in range(0, len(x), batch_size):
                xb, yb = x[i : i + batch_size], y[i : i + batch_size]
                xa = xb if eps == 0 else spec(model, xb, yb, eps=float(eps), seed=seed, **attack_kwargs)
                correct += int((predict(model, xa) == yb).sum())
                done += 1
                if on_progress:
                    on_progress(done / total)
            accuracies.append(correct / len(x))
    return accuracies


def compare_models(models: dict[str, Any], x, y, *, attack: str, eps_grid: Sequence[float], seed: int = 0,
                   **attack_kwargs) -> dict[str, list[float]]:
    """Robust accuracy curves of several models on the same images: {name: accuracies}."""
    return {name: robust_accuracy(m, x, y, attack=attack, eps_grid=eps_grid, seed=seed, **attack_kwargs)
            for name, m in models.items()}


def _fooled(model, spec, x, y, eps, seed, attack_kwargs, target=None):
    if target is None:
        return predict(model, spec(model, x, y, eps=float(eps), seed=seed, **attack_kwargs)) != y
    x_adv = spec(model, x, y, eps=float(eps), seed=seed, targeted=True, target=target, **attack_kwargs)
    return predict(model, x_adv) == target


def minimal_eps(model, x: torch.Tensor, y: torch.Tensor, *, attack: str, eps_max: float | None = None,
                bisection_steps: int = 7, grid_points: int = 100, seed: int = 0, batch_size: int = ATTACK_BATCH,
                target: int | torch.Tensor | None = None, on_progress: Callable[[float], None] | None = None,
                **attack_kwargs) -> torch.Tensor:
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
    n_batches = math.ceil(len(x) / batch_size)
    with eval_mode(model):
        for b, i in enumerate(range(0, len(x), batch_size)):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]

            def progress(fraction):
                if on_progress:
                    on_progress((b + fraction) / n_batches)

            tb = target[i : i + batch_size] if target is not None else None
            out[i : i + batch_size] = _minimal_eps_batch(model, spec, xb, yb, eps_max, grid_points, bisection_steps,
                                                         seed, attack_kwargs, progress, tb)
    return out.detach()


def _minimal_eps_batch(model, spec, x, y, eps_max, grid_points, bisection_steps, seed, attack_kwargs, progress,
                       target=None):
    clean_wrong = predict(model, x) != y if target is None else predict(model, x) == target
    result = torch.full((len(x),), float("inf"), device=x.device)
    result[clean_wrong] = 0.0
    todo = (~clean_wrong).nonzero().flatten()
    if len(todo) == 0:
        progress(1.0)
        return result
    if spec.kind == "minimal":
        x_adv = spec(model, x[todo], y[todo], seed=seed, **attack_kwargs)
        fooled = predict(model, x_adv) != y[todo]
        norms = flat_norm(x_adv - x[todo], spec.norm)
        result[todo[fooled]] = torch.where(norms[fooled] <= eps_max, norms[fooled], torch.tensor(float("inf"), device=x.device))
        progress(1.0)
        return result
    if spec.name == "fgsm":
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
            pred = predict(model, (x[todo[idx]] + eps * direction[idx]).clamp(0, 1))
            fooled = pred != y[todo[idx]] if t is None else pred == t[idx]
            result[todo[idx[fooled]]] = eps
            progress((k + 1) / len(grid))
        progress(1.0)
        return result
    steps = 1 + bisection_steps
    def tg(index):
        return target[index] if target is not None else None

    fooled = _fooled(model, spec, x[todo], y[todo], eps_max, seed, attack_kwargs, tg(todo))
    progress(1 / steps)
    found = todo[fooled]
    lower = torch.zeros(len(x), device=x.device)
    upper = torch.full((len(x),), float(eps_max), device=x.device)
    for s in range(bisection_steps):
        mid = (lower + upper) / 2
        for value in mid[found].unique().tolist():  # one attack call per shared bracket
            group = found[mid[found] == value]
            hit = _fooled(model, spec, x[group], y[group], value, seed, attack_kwargs, tg(group))
            upper[group[hit]] = value
            lower[group[~hit]] = value
        progress((s + 2) / steps)
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


def attack_comparison_warnings(accuracy_by_attack: dict[str, list[float]], eps_grid: Sequence[float]) -> list[str]:
    """Warnings from several attacks on one model: a weaker attack beating a stronger one signals gradient masking."""
    warnings = []
    white_box = [a for a in accuracy_by_attack if a in ATTACKS and get_attack(a).kind == "gradient" and a != "fgsm"]
    for weak in [a for a in accuracy_by_attack if a in ("square", "fgsm") or a.startswith("transfer")]:
        for strong in white_box:
            gaps = [(e, w, s) for e, w, s in zip(eps_grid, accuracy_by_attack[weak], accuracy_by_attack[strong]) if w < s - 0.02]
            if gaps:
                e, w, s = max(gaps, key=lambda g: g[2] - g[1])
                kind = {"square": "black-box Square attack", "fgsm": "single-step FGSM"}.get(weak, "transfer attack (crafted on another model)")
                warnings.append(f"The {kind} beats {get_attack(strong).title} at ε = {e:g} ({100 * w:.1f}% vs {100 * s:.1f}% "
                                "accuracy): the gradient attack is misled, the model masks its gradients. Trust the lower number.")
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
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class EvaluationCache:
    """Per-example minimal eps cached in memory and on disk beside the model: never computed twice.

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
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, path)  # atomic: a reader sees the old file or the new one


def cached_minimal_eps(store, cache: EvaluationCache, model_id: str, x, y, *, attack: str, seed: int = 0,
                       on_progress=None, **params) -> torch.Tensor:
    """``minimal_eps`` for stored model ``model_id`` on the first len(x) test images, through the cache."""
    key = EvalKey(model_id, attack, tuple(sorted(params.items())), len(x), seed)
    hit = cache.get(key)
    if hit is not None:
        return hit
    model = store.load(model_id, device=x.device)
    values = minimal_eps(model, x, y, attack=attack, seed=seed, on_progress=on_progress, **params)
    cache.put(key, values)
    return values.cpu()


def cached_transfer_eps(store, cache: EvaluationCache, source_id: str, target_id: str, x, y, *, attack: str = "pgd",
                        seed: int = 0, on_progress=None, **params) -> torch.Tensor:
    """``transfer_minimal_eps`` from stored ``source_id`` to stored ``target_id``, cached beside the target."""
    key = EvalKey(target_id, f"transfer:{source_id}:{attack}", tuple(sorted(params.items())), len(x), seed)
    hit = cache.get(key)
    if hit is not None:
        return hit
    values = transfer_minimal_eps(store.load(source_id, device=x.device), store.load(target_id, device=x.device), x, y,
                                  attack=attack, seed=seed, on_progress=on_progress, **params)
    cache.put(key, values)
    return values.cpu()


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


__all__ = ["ATTACKS", "attack_comparison_warnings", "cached_transfer_eps", "transfer_minimal_eps", "model_sanity_warnings", "sanity_warnings", "EvalKey", "EvaluationCache", "accuracy_at", "cached_minimal_eps", "compare_models", "minimal_eps",
           "parse_eps_grid", "perturbation_stats", "robust_accuracy"]
