"""Running a grid: its jobs, then its table."""
from __future__ import annotations

import inspect
import json
import math

import torch

from ..attacks import ATTACKS
from ..evaluation import MINIMAL_EPS_VERSION, accuracy_at, minimal_eps, perturbation_stats
from ..store import ModelStore, display_names
from ..training.flags import train_command
from .backends import run_jobs
from .grids import (EvalGrid, MinimalEpsJob, SweepError, SweepResult, TrainGrid, TrainJob, _load, check_attacks,
                    check_eps, check_n, plan_evaluation, train_configs)

# ---- tables --------------------------------------------------------------------------------------------------------
def _finite(value: float):
    return value if math.isfinite(value) else "inf"


def _evaluation_rows(jobs, results, info, resolved, store):
    entries = {m: store.get(m) for m in resolved["models"]}
    names = display_names(list(entries.values()))
    eps_grid = resolved["eps"]
    rows, runs = [], []
    for job, result, meta in zip(jobs, results, info):
        spec = ATTACKS[job.attack]
        common = {"model_id": job.model_id, "model": names[job.model_id], "dataset": job.dataset, "attack": job.attack,
                  "norm": spec.norm}
        run = {**common, "kind": job.kind, "n": job.n, "seed": job.seed, **meta}
        if isinstance(job, MinimalEpsJob):
            values = torch.tensor(result["min_eps"], dtype=torch.float32)
            params = dict(job.params)
            for e, acc in zip(eps_grid, accuracy_at(values, eps_grid).tolist()):
                rows.append({**common, "eps": e, "robust_accuracy": round(acc, 6), "n": job.n, "seed": job.seed,
                             "params": json.dumps(params, sort_keys=True), "protocol": ""})
            stats = perturbation_stats(values)
            run.update(params=params, attack_defaults=dict(spec.defaults),
                       search={"method": "per-example minimal ε (robust_core.evaluation.minimal_eps)",
                               "version": MINIMAL_EPS_VERSION,
                               **{k: v.default for k, v in inspect.signature(minimal_eps).parameters.items()
                                  if k in ("bisection_steps", "grid_points") and k not in params}},
                       clean_accuracy=round(float((values > 0).float().mean()), 6),
                       minimal_perturbation={k: _finite(v) if isinstance(v, float) else v for k, v in stats.items()})
        else:
            rows.append({**common, "eps": job.eps, "robust_accuracy": round(float(result["robust_accuracy"]), 6),
                         "n": job.n, "seed": job.seed, "params": json.dumps({"version": result["version"]}),
                         "protocol": result["protocol"]})
            run.update(eps=job.eps, version=result["version"], protocol=result["protocol"], chain=result.get("chain"),
                       clean_accuracy=result["clean_accuracy"], robust_accuracy=result["robust_accuracy"],
                       stages=result["stages"])
        runs.append(run)
    return rows, runs


def run_sweep(grid: EvalGrid | TrainGrid, *, store: ModelStore | None = None, backend: str = "local",
              progress: bool = True, threads: int | None = None, ray_address: str | None = None,
              gpus: str | bool = "auto") -> SweepResult:
    """Run an evaluation or training grid as independent jobs and return its table (see the module's docstring).

    ``backend``: "local" (this process, one job after the other) or "ray" (each job a Ray task declaring ``threads``
    CPUs, default 1, and a GPU when the cluster has some and ``gpus`` is "auto"; connects to ``ray_address``, else
    ``$RAY_ADDRESS``, else starts Ray on this machine). ``threads``: torch's CPU threads per job (local: unchanged when
    None). Results land in ``store`` (default: ``$ROBUST_STORE_DIR``) either way: on a cluster its folder must be on a
    file system every node shares. Raises :class:`SweepError` for a grid that cannot run.
    """
    store = store if store is not None else ModelStore()
    kwargs = {"store": store, "backend": backend, "progress": progress, "threads": threads, "ray_address": ray_address,
              "gpus": gpus}
    if isinstance(grid, EvalGrid):
        jobs, resolved = plan_evaluation(grid, store)
        results, info = run_jobs(jobs, desc="evaluate", **kwargs)
        rows, runs = _evaluation_rows(jobs, results, info, resolved, store)
        return SweepResult(rows, kind="evaluate", grid=resolved, runs=runs,
                           reused=sum(i["status"] == "reused" for i in info),
                           computed=sum(i["status"] == "computed" for i in info),
                           reused_from_larger=sum("reused_from" in i for i in info))
    if not isinstance(grid, TrainGrid):
        raise SweepError(f"a grid is an EvalGrid or a TrainGrid, not {type(grid).__name__}")
    configs = train_configs(grid)
    evaluate = bool(grid.attacks or grid.eval_eps)
    if evaluate:  # check the evaluation half before training anything
        attacks = check_attacks(grid.attacks, grid.attack_params)
        check_eps(grid.eval_eps, attacks, sorted({c.dataset for c in configs}))
        check_n(grid.n)
    for dataset in sorted({c.dataset for c in configs}):
        _load(dataset)
    jobs = [TrainJob(c.to_dict()) for c in configs]
    results, info = run_jobs(jobs, desc="train", **kwargs)
    resolved = {"methods": list(grid.methods), "lam": list(grid.lam), "eps": list(grid.eps), "seeds": list(grid.seeds),
                "base": dict(grid.base), "method_kwargs": dict(grid.method_kwargs)}
    runs, by_id = [], {}
    for config, result, meta in zip(configs, results, info):
        entry = store.get(result["model_id"])
        k = config.method_kwargs
        trained = {"model_id": entry.model_id, "model": entry.name, "dataset": config.dataset, "arch": config.arch,
                   "method": config.method, "lam": k.get("lam", ""), "train_eps": k.get("eps", ""), "seed": config.seed,
                   "epochs": config.epochs, "n_train": config.train_subset or "",
                   "test_acc": round(float(entry.meta["metrics"]["test_acc"]), 6),
                   "wall_time_s": round(float(entry.meta.get("wall_time_s") or 0.0), 3)}
        by_id[entry.model_id] = trained
        runs.append({**trained, "kind": "train", "config": config.to_dict(), "command": train_command(config), **meta})
    reused = sum(i["status"] == "reused" for i in info)
    computed = len(info) - reused
    if not evaluate:
        return SweepResult(list(by_id.values()), kind="train", grid=resolved, runs=runs, reused=reused,
                           computed=computed)
    eval_grid = EvalGrid(models=list(by_id), attacks=grid.attacks, eps=grid.eval_eps, n=grid.n, seed=grid.eval_seed,
                         attack_params=grid.attack_params)
    evaluated = run_sweep(eval_grid, **kwargs)
    rows = [{**{k: v for k, v in by_id[r["model_id"]].items() if k not in ("wall_time_s",)}, **r,
             "seed": by_id[r["model_id"]]["seed"], "attack_seed": r["seed"]} for r in evaluated]
    resolved["evaluation"] = evaluated.grid
    return SweepResult(rows, kind="train+evaluate", grid=resolved, runs=runs + evaluated.runs,
                       reused=reused + evaluated.reused, computed=computed + evaluated.computed,
                       reused_from_larger=evaluated.reused_from_larger)
