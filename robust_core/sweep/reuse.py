"""Reusing a cached minimal-ε result made on more test images: a sweep on the first n images reads the first n values
of a result for the first N ≥ n images of the same model, attack, parameters and seed, instead of searching again.

That is exact only when the search gives each image a value that does not depend on the images after it:
:func:`robust_core.evaluation.minimal_eps` attacks consecutive batches of ``batch_size`` images, each attack call on
the images of a batch still to attack, in order, so an image sees the same images before it in both runs. Then:

- FGSM: no randomness; each image's gradient is its own (the attack sums the per-image losses);
- PGD with one random start, or none: every call seeds a fresh generator and draws all its L∞ starts at once, one
  uniform value per pixel in order; torch's CPU generator fills a tensor in sequence, so the first images' starts are
  the same whatever the number of images (checked: 20 images and the first 20 of 60, the same values).

Not for PGD L2 (each start's radius is drawn after every image's direction, so it depends on the count) nor several
restarts (a restart draws after the previous one, whose draw counts the later images), nor the other attacks, whose
random draws have not been checked: those are computed as before unless their exact key is cached.
"""
from __future__ import annotations

import inspect
import json

import torch

from ..attacks import ATTACKS, fgsm, pgd
from ..evaluation import EvalKey, EvaluationCache, minimal_eps
from ..store import ModelStore
from .grids import SEARCH_PARAMS, MinimalEpsJob


def effective_params(attack: str, params: dict) -> dict:
    """Every parameter the search and the attack run with: their defaults, the attack's presets, then ``params``
    (so ``{"steps": 40}`` and ``{"steps": 40, "restarts": 1}`` compare equal for PGD)."""
    spec = ATTACKS[attack]
    own = {k: p.default for k, p in inspect.signature(spec.fn).parameters.items()
           if p.kind == p.KEYWORD_ONLY and p.default is not p.empty and k not in ("eps", "targeted", "target", "seed")}
    # minimal_eps takes batch_size itself (its batches): the attack's own batch_size never reaches the attack.
    search = {k: p.default for k, p in inspect.signature(minimal_eps).parameters.items() if k in SEARCH_PARAMS}
    return {**own, **search, **spec.defaults, **params}


def prefix_stable(attack: str, params: dict) -> bool:
    """Whether the search's value for an image is the same on the first n images as on any larger first N."""
    spec = ATTACKS[attack]
    p = effective_params(attack, params)
    if spec.fn is fgsm:
        return True
    if spec.fn is pgd:
        return not p["random_start"] or (p["norm"] == "linf" and p["restarts"] == 1)
    return False


def _cached_keys(store: ModelStore, model_id: str) -> list[EvalKey]:
    """The keys of the model's cached minimal-ε results that the current search would compute under their name."""
    keys = []
    for path in sorted((store.get(model_id).path / "evaluations").glob("*.json")):
        try:
            payload = json.loads(path.read_text())
            key = EvalKey(payload["model_id"], payload["attack"], tuple(sorted(payload["params"].items())),
                          int(payload["n_examples"]), int(payload["seed"]))
            if key.digest() != path.stem:  # another version of the search or of the attack's code
                continue
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        keys.append(key)
    return keys


def find_superset(store: ModelStore, cache: EvaluationCache, job: MinimalEpsJob) -> tuple[torch.Tensor, EvalKey] | None:
    """The first ``job.n`` values of the smallest cached result on more images that is exactly the job's search, and
    that result's key; None when there is none (or the job's attack is not :func:`prefix_stable`)."""
    params = dict(job.params)
    if not isinstance(job, MinimalEpsJob) or not prefix_stable(job.attack, params):
        return None
    wanted = effective_params(job.attack, params)
    candidates = sorted((k for k in _cached_keys(store, job.model_id)
                         if k.model_id == job.model_id and k.attack == job.attack and k.seed == job.seed
                         and k.n_examples > job.n and effective_params(k.attack, dict(k.params)) == wanted),
                        key=lambda k: k.n_examples)
    for key in candidates:
        values = cache.get(key)
        if values is not None and len(values) == key.n_examples:
            return values[: job.n].clone(), key
    return None


def find_minimal_eps(store: ModelStore, cache: EvaluationCache, job: MinimalEpsJob, *,
                     shipped: bool = False) -> tuple[torch.Tensor, EvalKey | None] | None:
    """A minimal-ε job's values if they are on disk: (values, None) from its own cache entry, (values, key) from the
    larger result ``key`` (:func:`find_superset`), else None. ``shipped``: first install the results shipped for the
    job's model (:func:`robust_core.precomputed.install_precomputed`: only for the very weights they were made for),
    as the dashboard does when it starts."""
    exact = cache.get(EvalKey(job.model_id, job.attack, job.params, job.n, job.seed))
    if exact is not None:
        return exact, None
    found = find_superset(store, cache, job)
    if found is not None or not shipped:
        return found
    from ..precomputed import install_precomputed

    if not any(status == "installed" for _, status in install_precomputed(store, cache, model_ids={job.model_id})):
        return None
    return find_minimal_eps(store, cache, job)
