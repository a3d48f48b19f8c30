"""Backends: the jobs one after the other in this process, or as Ray tasks; every finished job is on disk."""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..evaluation import EvaluationCache
from ..store import ModelStore
from .grids import BACKENDS, RAY_REQUIREMENTS, SweepError, SweepJob
from .jobs import _ray_task, cached_result, execute_job

# The robust_core package (travels to Ray workers) and the checkout holding it (on their path).
PACKAGE_DIR = Path(__file__).resolve().parents[1]

# ---- backends ------------------------------------------------------------------------------------------------------
def _run_local(pending, store_root, on_done, *, threads):
    for index, job in pending:
        t0 = time.perf_counter()
        result = execute_job(job, store_root, threads=threads)
        on_done(index, result, time.perf_counter() - t0)


def import_ray():
    try:
        import ray
    except ImportError:
        raise SweepError("the Ray backend needs Ray, which is not installed: "
                         f"pip install -r {RAY_REQUIREMENTS}") from None
    return ray


def _ray_env() -> dict:
    """Environment variables a Ray task needs: the data settings, and this checkout on the path (for a Ray that
    someone else started; the sweep's own ``ray.init`` also uploads the package, see :func:`_run_ray`)."""
    env = {k: os.environ[k] for k in ("ROBUST_DATA_DIR", "ROBUST_OFFLINE") if os.environ.get(k)}
    if os.environ.get("ROBUST_DEVICE", "").startswith("cpu"):
        env["ROBUST_DEVICE"] = "cpu"
    root = str(PACKAGE_DIR.parent)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _run_ray(pending, store_root, on_done, *, threads, address, gpus):
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        # The package travels with the job (py_modules), so nodes without this checkout can import it; the rest of
        # the requirements (torch, ...) must be installed on every node.
        runtime_env = {"py_modules": [str(PACKAGE_DIR)], "env_vars": _ray_env()}
        if address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=address or None, runtime_env=runtime_env, log_to_driver=False)
        else:
            ray.init(runtime_env=runtime_env, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        cpus = max(1, int(threads or 1))
        use_gpu = (gpus == "auto" and ray.cluster_resources().get("GPU", 0) >= 1
                   and not os.environ.get("ROBUST_DEVICE", "").startswith("cpu")) or gpus is True
        remote = ray.remote(_ray_task).options(num_cpus=cpus, num_gpus=1 if use_gpu else 0,
                                               runtime_env={"env_vars": _ray_env()}, max_retries=1)
        started_at = {}
        refs = {}
        for index, job in pending:
            ref = remote.remote(job, store_root, cpus, "cuda" if use_gpu else "cpu")
            refs[ref] = index
            started_at[ref] = time.perf_counter()
        waiting = list(refs)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                for ref in done:
                    on_done(refs[ref], ray.get(ref), time.perf_counter() - started_at[ref])
        except BaseException:
            for ref in waiting:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()


def run_jobs(jobs: Sequence[SweepJob], *, store: ModelStore, backend: str = "local", progress: bool = True,
             threads: int | None = None, ray_address: str | None = None, gpus: str | bool = "auto",
             desc: str = "sweep",
             on_result: Callable[[int, dict], None] | None = None) -> tuple[list[dict], list[dict]]:
    """Run ``jobs``, reusing every result already on disk: (results in job order, per job {status, seconds}).
    ``on_result(index, result)`` is called as each computed job finishes (in the order they finish)."""
    if backend not in BACKENDS:
        raise SweepError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "ray":
        import_ray()  # a clear error before anything runs
    cache = EvaluationCache(store)
    results: list[dict | None] = [None] * len(jobs)
    info = [{"status": "reused", "seconds": 0.0} for _ in jobs]
    pending = []
    for i, job in enumerate(jobs):
        results[i] = cached_result(job, store, cache)
        if results[i] is None:
            pending.append((i, job))
        elif "reused_from" in results[i]:
            info[i]["reused_from"] = results[i]["reused_from"]
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc=desc, unit="job", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)

    def on_done(index, result, seconds):
        results[index] = result
        info[index] = {"status": "computed", "seconds": round(seconds, 3)}
        bar.set_postfix_str(jobs[index].label, refresh=False)
        bar.update(1)
        if on_result is not None:
            on_result(index, result)

    try:
        if pending:
            store_root = str(store.root.resolve())
            if backend == "ray":
                _run_ray(pending, store_root, on_done, threads=threads, address=ray_address, gpus=gpus)
            else:
                _run_local(pending, store_root, on_done, threads=threads)
    finally:
        bar.close()
    return results, info
