"""The lab's own numbers beside a challenge's board: what gradients find where students paint, and a guess
challenge's measured answer. Each is computed once per challenge and set of weights, by whichever replica asks first
(:func:`robust_core.file_locks.compute_once`), and kept in ``<store>/.challenges/reference/``.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from ..file_locks import atomic_write_text, compute_once
from ..lectures import SHIPPED_IMAGES, ShippedResults, shipped_weights
from .spec import Challenge

REFERENCE_DIR = "reference"
CURVE_POINTS = 101  # ε values of a guess challenge's revealed curve


def _key(challenge: Challenge, digests: list[str], seed: int) -> str:
    fields = [challenge.kind, challenge.dataset, challenge.image, challenge.norm, list(challenge.models), digests,
              challenge.answer.__dict__ if challenge.answer else None, seed]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


def fool_reference(challenge: Challenge, models: dict[str, object], x: torch.Tensor, label: int, *,
                   results: ShippedResults | None = None, seed: int = 0) -> dict:
    """Per model (by file stem): its clean reading's correctness, PGD's minimal L∞ ε for this image (from the shipped
    bisection results, when the image is among their first 1,000) and the best-of minimal L2 perturbation
    (:func:`robust_core.minimal_norm.best_minimal_perturbation`: FAB-L2, DeepFool and C&W, each verified), with that
    perturbation's L∞ too, so the board compares humans and gradients in the challenge's norm. Values are pixel-scale
    norms; None where nothing was found."""
    from ..minimal_norm import best_minimal_perturbation
    from ..tensors import predict

    results = results or ShippedResults()
    y = torch.tensor([label])
    out = {}
    for name, model in models.items():
        row = {"clean_correct": bool(predict(model, x)[0] == label)}
        try:
            pgd = results.minimal_eps(name, "pgd", n=SHIPPED_IMAGES)
            value = float(pgd[challenge.image]) if challenge.image < len(pgd) else math.nan
            row["pgd_linf"] = value if math.isfinite(value) else None
        except ValueError as exc:
            row["pgd_linf"], row["pgd_missing"] = None, str(exc)
        best = best_minimal_perturbation(model, x, y, norm="l2", seed=seed)
        l2 = float(best.norms[0])
        row["best_l2"] = l2 if math.isfinite(l2) else None
        row["best_l2_linf"] = float((best.x_adv - x).abs().max()) if math.isfinite(l2) else None
        row["best_l2_found_by"] = best.found_by[0]
        out[name] = row
    return {"models": out, "seed": seed}


def guess_reference(challenge: Challenge, *, results: ShippedResults | None = None) -> dict:
    """A guess challenge's measured answer: for ``eps_below``, the smallest ε at which the model's accuracy under the
    attack (per-image minimal ε of the shipped results, 1,000 test images) is below the threshold, with the curve
    the reveal draws. ``measured`` is None when the accuracy never falls that low within the search's range."""
    from ..evaluation import accuracy_at, comparison_params

    results = results or ShippedResults()
    answer = challenge.answer
    model = challenge.models[0]
    min_eps = results.minimal_eps(model, answer.attack, n=SHIPPED_IMAGES).double()
    ordered = min_eps.sort().values
    # accuracy(ε) = #{m_i > ε} / n falls below a once #{m_i <= ε} > n (1 - a): at the (floor(n (1 - a)) + 1)-th
    # smallest minimal ε.
    k = math.floor(len(ordered) * (1.0 - answer.accuracy))
    measured = float(ordered[k]) if k < len(ordered) and math.isfinite(float(ordered[k])) else None
    eps_max = float(comparison_params(answer.attack)["eps_max"])
    grid = [eps_max * i / (CURVE_POINTS - 1) for i in range(CURVE_POINTS)]
    curve = [float(a) for a in accuracy_at(min_eps, grid)]
    return {"measured": measured, "eps": grid, "accuracy": curve, "model": model, "attack": answer.attack,
            "threshold": answer.accuracy, "n": len(ordered)}


def cached_reference(root: str | Path, challenge: Challenge, compute, *, seed: int = 0,
                     models_dir=None) -> dict:
    """``compute()``'s reference for ``challenge``, computed once for the weights its models have now (across
    replicas: the second waits for the first and reads its file)."""
    ids = shipped_weights(models_dir)
    digests = [ids.get(m, ("", ""))[1] for m in challenge.models]
    folder = Path(root) / ".challenges" / REFERENCE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{challenge.name}-{_key(challenge, digests, seed)}.json"

    def read():
        try:
            return json.loads(file.read_text())
        except (OSError, ValueError):
            return None  # missing, or damaged: computed again

    def make():
        value = compute()
        atomic_write_text(file, json.dumps(value))
        return value

    return compute_once(root, f"challenge-{file.stem}", read=read, compute=make)


__all__ = ["cached_reference", "fool_reference", "guess_reference"]
