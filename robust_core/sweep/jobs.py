"""Running one job of a sweep, in this process or in a Ray worker, and the results already on disk."""
from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from ..attacks import ATTACKS
from ..data import load_dataset
from ..evaluation import EvaluationCache, cached_minimal_eps
from ..file_locks import atomic_write_text, compute_once
from ..store import ModelStore
from .grids import AUTOATTACK_CACHE_VERSION, Job, _resolve_function, train_command
from .reuse import find_minimal_eps

# ---- the AutoAttack cache ------------------------------------------------------------------------------------------
def autoattack_path(store: ModelStore, job: Job) -> Path:
    """``<model>/evaluations/autoattack/<digest>.json``: the key is model, version, ε, n, seed and the chain's
    parameters, so a changed protocol is recomputed, never reused."""
    from ..attacks.autoattack import VERSIONS

    version = ATTACKS[job.attack].defaults["version"]
    text = json.dumps([job.model_id, version, float(job.eps), job.n, job.seed, VERSIONS[version],
                       AUTOATTACK_CACHE_VERSION], default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return store.get(job.model_id).path / "evaluations" / "autoattack" / f"{digest}.json"


def read_autoattack(store: ModelStore, job: Job) -> dict | None:
    path = autoattack_path(store, job)
    try:
        payload = json.loads(path.read_text())
        if payload["model_id"] != job.model_id or float(payload["eps"]) != float(job.eps):
            return None
        float(payload["robust_accuracy"])
        return payload
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or unreadable: recomputed, never trusted


def _write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload))  # a reader (or a resumed sweep) sees no file or the whole one


# ---- running one job (in this process or in a Ray worker) ----------------------------------------------------------
@contextlib.contextmanager
def _torch_threads(threads: int | None):
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train_payload(entry, cached: bool) -> dict:
    return {"model_id": entry.model_id, "name": entry.name, "metrics": entry.meta.get("metrics", {}),
            "wall_time_s": entry.meta.get("wall_time_s"), "cached": cached}


def cached_result(job: Job, store: ModelStore, cache: EvaluationCache) -> dict | None:
    """The job's result if it is already on disk (then the job is not run again), else None."""
    if job.kind == "minimal_eps":
        # Its own entry, else the first n values of an exactly equivalent result on more images (the shipped results
        # on 1,000 images included): accuracy at any ε is then a lookup, no search runs.
        found = find_minimal_eps(store, cache, job, shipped=True)
        if found is None:
            return None
        values, source = found
        result = {"min_eps": values.tolist()}
        if source is not None:
            result["reused_from"] = {"n_examples": source.n_examples, "digest": source.digest()}
        return result
    if job.kind == "autoattack":
        return read_autoattack(store, job)
    if job.kind == "train":
        from ..training import TrainConfig

        model_id = TrainConfig.from_dict(job.config).config_hash()
        return _train_payload(store.get(model_id), True) if model_id in store else None
    if job.kind == "call":
        return None  # the function keeps its own cache
    raise ValueError(f"unknown job kind {job.kind!r}")


def execute_job(job: Job, store_root: str, *, threads: int | None = None, device: str | None = None,
                on_progress: Callable[[float, str], None] | None = None) -> dict:
    """Run one job against the store at ``store_root`` and return its result; the result is on disk when this returns
    (the evaluation cache, the AutoAttack cache or the store). ``threads``: torch's CPU threads for the job.
    ``on_progress(fraction, message)``: evaluations report as they go (AutoAttack after each stage); an exception it
    raises (a job runner's cancellation) stops the job, and nothing of it is cached."""
    from ..device import get_device

    with _torch_threads(threads):
        store = ModelStore(store_root)
        dev = get_device(device)
        if job.kind == "call":
            return _resolve_function(job.config["fn"])(store_root=store_root, device=dev, **job.config["kwargs"])
        if job.kind == "train":
            from ..training import TrainConfig

            config = TrainConfig.from_dict(job.config)
            _, entry, cached = store.train_or_load(config, device=dev, extra_meta={"command": train_command(config)})
            return _train_payload(entry, cached)
        data = load_dataset(job.dataset)
        x, y = data.test_x[: job.n].to(dev), data.test_y[: job.n].to(dev)
        if job.kind == "minimal_eps":
            values = cached_minimal_eps(store, EvaluationCache(store), job.model_id, x, y, attack=job.attack,
                                        seed=job.seed,
                                        on_progress=(lambda f: on_progress(f, "")) if on_progress else None,
                                        **dict(job.params))
            return {"min_eps": values.cpu().tolist()}
        if job.kind != "autoattack":
            raise ValueError(f"unknown job kind {job.kind!r}")
        # Under the entry's lock: another process (a replica, a second sweep) asking for it meanwhile waits, then reads.
        waiting = (lambda: on_progress(0.0, "waiting for another process computing it")) if on_progress else None
        return compute_once(store.root, f"autoattack-{autoattack_path(store, job).stem}",
                            read=lambda: read_autoattack(store, job), while_waiting=waiting,
                            compute=lambda: _run_autoattack_job(job, store, x, y, dev, on_progress))


def _run_autoattack_job(job: Job, store: ModelStore, x, y, dev, on_progress) -> dict:
    """Run one AutoAttack job and cache its result (the caller holds its lock)."""
    from ..attacks._common import predict
    from ..attacks.autoattack import VERSIONS, run_autoattack

    spec = ATTACKS[job.attack]
    model = store.load(job.model_id, device=dev)
    payload = {"model_id": job.model_id, "attack": job.attack, "version": spec.defaults["version"],
               "eps": float(job.eps), "norm": spec.norm, "n_examples": job.n, "seed": job.seed}
    if job.eps == 0:
        was_training = model.training
        model.eval()
        try:
            robust = predict(model, x) == y
        finally:
            model.train(was_training)
        clean = int(robust.sum()) / job.n
        payload.update(clean_accuracy=clean, robust_accuracy=clean, stages=[],
                       protocol=f"AutoAttack {spec.defaults['version']}, ε = 0: clean accuracy, no attack",
                       chain=[[name, params] for name, params in VERSIONS[spec.defaults["version"]]])
    else:
        chain = VERSIONS[spec.defaults["version"]]
        done_by_stage = stage_fractions(chain)
        finished: list = []

        def stage_done(stage):
            finished.append(stage)
            if on_progress is not None:
                on_progress(done_by_stage[len(finished) - 1], f"{stage.attack.upper().replace('_', '-')} done: "
                            f"{100 * stage.robust_accuracy:.1f}% still robust")
        report = run_autoattack(model, x, y, eps=float(job.eps), seed=job.seed, on_stage=stage_done,
                                **spec.defaults)
        robust = report.robust
        # Exact fractions of n, not float32 means: the ε = 0 job gives the very same clean accuracy.
        payload.update(clean_accuracy=round(report.clean_accuracy * job.n) / job.n,
                       robust_accuracy=int(robust.sum()) / job.n,
                       protocol=report.protocol(), stages=[asdict(s) for s in report.stages],
                       chain=[[name, params] for name, params in VERSIONS[report.version]])
    payload["robust"] = [int(v) for v in robust.cpu().tolist()]
    _write_json_atomic(autoattack_path(store, job), payload)
    return payload


def stage_fractions(chain: Sequence[tuple[str, dict]]) -> list[float]:
    """The share of an AutoAttack chain's work done after each stage, for a progress bar and its time estimate.

    Each stage's cost per image it attacks, in forward passes (a gradient step is about 3: forward and backward):
    APGD ``steps`` x targets x restarts x 3, FAB-T ``n_iter`` x targets x 3, Square ``n_queries``. Counting stages
    instead said "25%, about 20 s left" after APGD-CE of the standard chain, which has then done about 3% of its
    work. Worst case (a robust model: every stage runs on nearly every image); on a weak one the later stages have
    little left to attack and the job ends early.
    """
    costs = []
    for name, params in chain:
        targets = params.get("n_target_classes", 1) if name in ("apgd_t", "fab_t") else 1
        if name == "square":
            costs.append(float(params["n_queries"]))
        else:
            costs.append(3.0 * params.get("steps", params.get("n_iter", 100)) * targets * params.get("restarts", 1))
    total = sum(costs)
    done, fractions = 0.0, []
    for cost in costs:
        done += cost
        fractions.append(done / total)
    fractions[-1] = 1.0
    return fractions


def _ray_task(job: Job, store_root: str, threads: int, device: str | None) -> dict:
    """A Ray task's body: torch limited to the CPUs the task declared (Ray also sets OMP_NUM_THREADS)."""
    torch.set_num_threads(max(1, int(threads)))
    return execute_job(job, store_root, threads=threads, device=device)
