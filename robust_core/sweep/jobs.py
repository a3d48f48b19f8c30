"""Running one job of a sweep, in this process or in a Ray worker, and the results already on disk.

An AutoAttack job's result is :func:`robust_core.evaluation.cached_autoattack`'s, in the AutoAttack cache beside the
model, which the Attack page reads and fills too; the job serves as its key (it has an ``AutoAttackKey``'s fields).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from ..data import load_dataset
from ..evaluation import EvaluationCache, cached_autoattack, cached_minimal_eps, read_autoattack
from ..store import ModelStore
from ..training.flags import train_command
from .grids import AutoAttackJob, CallJob, MinimalEpsJob, SweepJob, TrainJob, _resolve_function
from .reuse import find_minimal_eps


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


def cached_result(job: SweepJob, store: ModelStore, cache: EvaluationCache) -> dict | None:
    """The job's result if it is already on disk (then the job is not run again), else None."""
    if isinstance(job, MinimalEpsJob):
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
    if isinstance(job, AutoAttackJob):
        return read_autoattack(store, job)
    if isinstance(job, TrainJob):
        from ..training import TrainConfig

        model_id = TrainConfig.from_dict(job.config).config_hash()
        return _train_payload(store.get(model_id), True) if model_id in store else None
    if isinstance(job, CallJob):
        return None  # the function keeps its own cache
    raise ValueError(f"not a sweep job: {job!r}")


def execute_job(job: SweepJob, store_root: str, *, threads: int | None = None, device: str | None = None,
                on_progress: Callable[[float, str], None] | None = None) -> dict:
    """Run one job against the store at ``store_root`` and return its result; the result is on disk when this returns
    (the evaluation cache, the AutoAttack cache or the store). ``threads``: torch's CPU threads for the job.
    ``on_progress(fraction, message)``: evaluations report as they go (AutoAttack after each stage); an exception it
    raises (a job runner's cancellation) stops the job, and nothing of it is cached."""
    from ..device import get_device

    with _torch_threads(threads):
        store = ModelStore(store_root)
        dev = get_device(device)
        if isinstance(job, CallJob):
            return _resolve_function(job.fn)(store_root=store_root, device=dev, **job.kwargs)
        if isinstance(job, TrainJob):
            from ..training import TrainConfig

            config = TrainConfig.from_dict(job.config)
            _, entry, cached = store.train_or_load(config, device=dev, extra_meta={"command": train_command(config)})
            return _train_payload(entry, cached)
        if not isinstance(job, (MinimalEpsJob, AutoAttackJob)):
            raise ValueError(f"not a sweep job: {job!r}")
        data = load_dataset(job.dataset)
        x, y = data.test_x[: job.n].to(dev), data.test_y[: job.n].to(dev)
        if isinstance(job, MinimalEpsJob):
            values = cached_minimal_eps(store, EvaluationCache(store), job.model_id, x, y, attack=job.attack,
                                        seed=job.seed,
                                        on_progress=(lambda f: on_progress(f, "")) if on_progress else None,
                                        **dict(job.params))
            return {"min_eps": values.cpu().tolist()}
        return cached_autoattack(store, job, x, y, on_progress=on_progress)


def _ray_task(job: SweepJob, store_root: str, threads: int, device: str | None) -> dict:
    """A Ray task's body: torch limited to the CPUs the task declared (Ray also sets OMP_NUM_THREADS)."""
    torch.set_num_threads(max(1, int(threads)))
    return execute_job(job, store_root, threads=threads, device=device)
