"""The sweep on one machine: local (one job after the other) against Ray with 2 workers, same grid, same numbers.

    python -m benchmarks.sweep_backends [--n 500] [--attack autoattack_fast] [--eps 0.1,0.2,0.3] [--models 4]

Runs 4 shipped MNIST models x 3 eps (one AutoAttack job per model and eps: 12 independent jobs) twice, each time
in a fresh store so that nothing is reused from a cache:

- **local**: ``run_sweep(backend="local")``, the jobs one after the other in this process, torch with all this
  machine's cores (its default);
- **Ray**: ``run_sweep(backend="ray")`` with a Ray started here on this machine's cores, each job a task declaring
  1 CPU (so as many jobs run at once as there are cores, each torch limited to 1 thread).

It checks that both give the same robust accuracy for every job (the seeds are explicit) and prints both wall
times, the ratio and each job's time. Needs Ray: ``pip install -r requirements-ray.txt``.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time


import torch

from robust_core.shipped import install_shipped
from robust_core.store import ModelStore
from robust_core.sweep import EvalGrid, run_sweep

# Models whose jobs take different times (a robust model's AutoAttack runs every stage on most points, a broken one
# stops early): the uneven jobs a real sweep has, which is where running them side by side pays or not.
MODELS = ["standard", "gfa", "gnr", "fgsm_at", "pgd_at", "trades"]


def fresh_store(methods: list[str]) -> tuple[ModelStore, list[str]]:
    store = ModelStore(tempfile.mkdtemp(prefix="sweep-bench-"))
    entries = [e for s, e, _ in install_shipped(store) if e is not None and e.meta["config"]["dataset"] == "mnist"]
    by_method = {}
    for e in entries:
        c = e.meta["config"]
        if c["method"] == "gfa" and c["method_kwargs"].get("layers") != "deep":
            continue
        by_method.setdefault(c["method"], e.model_id)
    return store, [by_method[m] for m in methods]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--attack", default="autoattack_fast")
    parser.add_argument("--eps", default="0.1,0.2,0.3")
    parser.add_argument("--models", type=int, default=4, help=f"the first K of {MODELS}")
    args = parser.parse_args(argv)
    eps = [float(e) for e in args.eps.split(",")]
    methods = MODELS[: args.models]
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, {platform.machine()}; {args.attack} on "
          f"{len(methods)} shipped MNIST models ({', '.join(methods)}) x eps {eps}, first {args.n} test images")
    timings, tables = {}, {}
    for backend in ("local", "ray"):
        store, ids = fresh_store(methods)
        grid = EvalGrid(models=ids, attacks=[args.attack], eps=eps, n=args.n)
        t0 = time.perf_counter()
        result = run_sweep(grid, store=store, backend=backend, progress=False)
        timings[backend] = time.perf_counter() - t0
        tables[backend] = {(r["model_id"], r["eps"]): r["robust_accuracy"] for r in result}
        per_job = ", ".join(f"{r['model_id'][:8]} ε={r['eps']:g} {r['seconds']:.0f} s" for r in result.runs)
        # Ray's per-job seconds run from submission (every job is submitted at once), so they include the wait.
        what = "each job's seconds from its submission" if backend == "ray" else "each job's seconds"
        print(f"{backend}: {timings[backend]:.1f} s wall, {result.computed} jobs computed ({what}: {per_job})",
              flush=True)
    same = tables["local"] == tables["ray"]
    print("\n| model | " + " | ".join(f"ε = {e:g}" for e in eps) + " |")
    print("|---" * (len(eps) + 1) + "|")
    for m in dict.fromkeys(k[0] for k in tables["local"]):
        print(f"| {m[:8]} | " + " | ".join(f"{100 * tables['local'][(m, e)]:.1f}%" for e in eps) + " |")
    print(f"\nlocal {timings['local']:.1f} s, Ray (2 workers) {timings['ray']:.1f} s: "
          f"**{timings['local'] / timings['ray']:.2f}×**; identical numbers: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
