"""Results cached beside the model, in memory and on disk, never computed twice (not even by two processes sharing
the store): per-example minimal eps (:class:`EvaluationCache`, keyed by :class:`EvalKey`) and AutoAttack's robust
accuracy at one eps (:func:`cached_autoattack`, keyed by :class:`AutoAttackKey`).

Files: ``<store>/<dataset>/<model_id>/evaluations/<digest>.json`` and ``.../evaluations/autoattack/<digest>.json``.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..attacks import get_attack
from ..tensors import eval_mode, predict
from ..file_locks import atomic_write_text, compute_once
from .progress import stage_fractions
from .search import minimal_eps, transfer_minimal_eps

# Bumped per attack when its code changes what it finds, so that only its cached results are recomputed (the shipped
# evaluations of the other attacks stay valid): DeepFool no longer carries the clipped-off part of its steps, C&W
# warm-starts its rounds (both found far more of a robust model's adversarial examples). PGD draws its random starts
# per grouped bisection round (one eps per example), so its per-image results moved by about one bisection tick;
# APGD halves its step where Croce & Hein's schedule says and restarts with fresh momentum.
ATTACK_CODE_VERSIONS = {"deepfool": 2, "deepfool_linf": 2, "cw_l2": 2, "pgd": 2, "pgd_l2": 2,
                        "apgd_ce": 2, "apgd_dlr": 2, "apgd_t": 2}
# Bumped when minimal_eps' search changes: cached results of the old search are not reused.
MINIMAL_EPS_VERSION = 2
# Bumped when the AutoAttack cache's content changes: older files are recomputed, not reused (2: FAB-T counts any
# misclassification, as the reference does).
AUTOATTACK_CACHE_VERSION = 2
# A transfer curve's key names its source model and attack (transfer_key): "transfer:<source id>:<attack>".
TRANSFER = "transfer"


def transfer_key(source_id: str, attack: str) -> str:
    """The key (:attr:`EvalKey.attack`) of the curve of ``attack``'s examples crafted on model ``source_id``."""
    return f"{TRANSFER}:{source_id}:{attack}"


def is_transfer(key: str) -> bool:
    """Whether a curve's key is a transfer curve's (:func:`transfer_key`)."""
    return key.startswith(f"{TRANSFER}:")


# ---- per-example minimal eps ---------------------------------------------------------------------------------------
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
    key = EvalKey(target_id, transfer_key(source_id, attack), tuple(sorted(params.items())), len(x), seed)
    return cache.compute(key, lambda: transfer_minimal_eps(
        store.load(source_id, device=x.device), store.load(target_id, device=x.device), x, y, attack=attack, seed=seed,
        on_progress=on_progress, **params), on_progress=on_progress)


# ---- AutoAttack at one eps -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AutoAttackKey:
    """AutoAttack ``attack`` (``autoattack_standard``, ``autoattack_fast``) at L∞ ``eps`` on the first ``n`` test
    images of stored model ``model_id``. A sweep's AutoAttack job has these fields too, and serves as its key."""
    model_id: str
    attack: str
    eps: float
    n: int
    seed: int = 0


def autoattack_path(store, key: AutoAttackKey) -> Path:
    """``<model>/evaluations/autoattack/<digest>.json``: the key is model, version, ε, n, seed and the chain's
    parameters, so a changed protocol is recomputed, never reused."""
    from ..attacks.autoattack import VERSIONS

    version = get_attack(key.attack).defaults["version"]
    text = json.dumps([key.model_id, version, float(key.eps), key.n, key.seed, VERSIONS[version],
                       AUTOATTACK_CACHE_VERSION], default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return store.get(key.model_id).path / "evaluations" / "autoattack" / f"{digest}.json"


def read_autoattack(store, key: AutoAttackKey) -> dict | None:
    """The cached result of ``key`` (see :func:`autoattack_result`), or None where it is missing or unreadable."""
    path = autoattack_path(store, key)
    try:
        payload = json.loads(path.read_text())
        if payload["model_id"] != key.model_id or float(payload["eps"]) != float(key.eps):
            return None
        float(payload["robust_accuracy"])
        return payload
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or unreadable: recomputed, never trusted


def autoattack_result(model, x: torch.Tensor, y: torch.Tensor, *, attack: str, eps: float, seed: int = 0,
                      on_progress: Callable[[float, str], None] | None = None) -> dict:
    """AutoAttack ``attack`` at L∞ ``eps`` on (x, y), as plain data: clean and robust accuracy, the protocol, every
    stage, the chain's parameters and which images stay robust. At ε = 0 nothing is attacked: the clean accuracy.

    ``on_progress(fraction, message)`` after each stage (:func:`stage_fractions`); an exception it raises (a job
    runner's cancellation) stops the chain there."""
    from ..attacks.autoattack import VERSIONS, run_autoattack

    spec = get_attack(attack)
    version = spec.defaults["version"]
    n = len(x)
    payload = {"attack": attack, "version": version, "eps": float(eps), "norm": spec.norm, "n_examples": n,
               "seed": seed}
    if eps == 0:
        with eval_mode(model):
            robust = predict(model, x) == y
        clean = int(robust.sum()) / n
        payload.update(clean_accuracy=clean, robust_accuracy=clean, stages=[],
                       protocol=f"AutoAttack {version}, ε = 0: clean accuracy, no attack")
    else:
        done_by_stage = stage_fractions(VERSIONS[version])
        finished: list = []

        def stage_done(stage):
            finished.append(stage)
            if on_progress is not None:
                on_progress(done_by_stage[len(finished) - 1], f"{stage.attack.upper().replace('_', '-')} done: "
                            f"{100 * stage.robust_accuracy:.1f}% still robust")
        report = run_autoattack(model, x, y, eps=float(eps), seed=seed, on_stage=stage_done, **spec.defaults)
        robust = report.robust
        # Exact fractions of n, not float32 means: the ε = 0 result gives the very same clean accuracy.
        payload.update(clean_accuracy=round(report.clean_accuracy * n) / n, robust_accuracy=int(robust.sum()) / n,
                       protocol=report.protocol(), stages=[asdict(s) for s in report.stages])
    payload["chain"] = [[name, params] for name, params in VERSIONS[version]]
    payload["robust"] = [int(v) for v in robust.cpu().tolist()]
    return payload


def cached_autoattack(store, key: AutoAttackKey, x: torch.Tensor, y: torch.Tensor, *,
                      on_progress: Callable[[float, str], None] | None = None) -> dict:
    """:func:`autoattack_result` for stored model ``key.model_id`` on (x, y), the first ``key.n`` test images, through
    its cache: computed under the key's lock in the store, so that a process asking for it meanwhile (a replica, a
    sweep) waits, then reads it. Nothing is cached when ``on_progress`` raises."""
    if len(x) != key.n:
        raise ValueError(f"the key is for {key.n} images, not {len(x)}")

    def compute() -> dict:
        model = store.load(key.model_id, device=x.device)
        payload = {"model_id": key.model_id, **autoattack_result(model, x, y, attack=key.attack, eps=key.eps,
                                                                  seed=key.seed, on_progress=on_progress)}
        path = autoattack_path(store, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(payload))  # a reader (or a resumed sweep) sees no file or the whole one
        return payload

    waiting = (lambda: on_progress(0.0, "waiting for another process computing it")) if on_progress else None
    return compute_once(store.root, f"autoattack-{autoattack_path(store, key).stem}",
                        read=lambda: read_autoattack(store, key), while_waiting=waiting, compute=compute)
