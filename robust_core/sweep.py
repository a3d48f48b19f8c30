"""Sweeps: a grid of evaluations (models × attacks × ε) or of trainings, run as independent jobs that resume.

    python -m robust_core.sweep --models shipped --attacks pgd,fgsm --eps 0.05:0.3:0.05 --n 500 --out sweep/
    python -m robust_core.sweep --models 2a34,b2b7 --attacks autoattack_standard --eps 0.3 --n 1000 --out aa/
    python -m robust_core.sweep train --method gfa --lam 0.1,1 --seed 0,1 --epochs 1 --n-train 2000 --out gfa/
    python -m robust_core.sweep train --method pgd_at --eps 0.1,0.3 --attacks pgd --eval-eps 0.1,0.3 --n 500 --out at/
    RAY_ADDRESS=<head>:6379 python -m robust_core.sweep ...      # or --ray: the same jobs as Ray tasks

Jobs and what makes them resumable (every finished job is on disk, written atomically, before the next starts):
- per-example minimal ε of one (model, attack): :func:`robust_core.evaluation.cached_minimal_eps`, cached beside the
  model like the Attack page's results (same parameters, same cache entries: the page, the shipped evaluations and
  the sweep reuse each other's work); accuracy at every ε of the grid is then a lookup;
- AutoAttack (``autoattack_standard``, ``autoattack_fast``) of one (model, ε): the chain at that fixed ε, its result
  cached in ``<model>/evaluations/autoattack/<digest>.json``;
- training of one configuration: :meth:`robust_core.store.ModelStore.train_or_load`; a configuration already in the
  store is not trained again;
- a function call (:func:`function_job`, from Python only): work the grids do not describe, e.g. the DeepDefense
  report's per-attack tables, run by the same backends; the function keeps its own cache.
An interrupted sweep (Ctrl-C, SIGKILL, a lost Ray node) loses only the jobs in flight: the same command again reuses
what finished and computes the rest, and says how many of each.

Outputs (``--out DIR``): ``results.csv`` (one row per model, attack and ε, or per trained configuration),
``results.json`` (the same rows, the grid, and every run's parameters: attack parameters, n, seed, AutoAttack's
protocol and stages) and the pages' figures as Plotly HTML (plotly.js from its CDN): robust accuracy against ε per
attack across models (the Attack page's ε-slider figure), per model across attacks, and training curves.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import inspect
import json
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .attacks import ATTACKS
from .data import DATASETS, DataNotFoundError, load_dataset
from .evaluation import (MINIMAL_EPS_VERSION, PAGE_ATTACK_PARAMS, PAGE_EPS_MAX, EvalKey, EvaluationCache, accuracy_at,
                         attack_comparison_warnings, cached_minimal_eps, minimal_eps, parse_eps_grid, perturbation_stats)
from .store import ModelStore, display_names

# The largest ε that means anything per norm on [0, 1] images of up to 784 pixels (the page's bounds).
EPS_LIMITS = {"linf": 1.0, "l2": 28.0, "l1": 784.0}
N_MAX = 10_000
# minimal_eps' own arguments, accepted in attack parameters beside the attack's.
SEARCH_PARAMS = ("eps_max", "bisection_steps", "grid_points", "batch_size")
# Bumped when the AutoAttack cache's content changes: older files are recomputed, not reused.
AUTOATTACK_CACHE_VERSION = 2  # 2: FAB-T counts any misclassification, as the reference does (2026-11-23)
RAY_REQUIREMENTS = "requirements-ray.txt"
BACKENDS = ("local", "ray")


class SweepError(ValueError):
    """A sweep cannot run as asked (unknown model or attack, ε or n out of range, missing data, Ray missing)."""


# ---- grids ----------------------------------------------------------------------------------------------------------
@dataclass
class EvalGrid:
    """Models × attacks × ε on the first ``n`` test images.

    ``models``: store ids or unique prefixes, or ``"shipped"`` (every shipped model installed in the store, optionally
    only those of ``dataset``). ``eps`` is in each attack's norm. ``attack_params``: per attack, parameters overriding
    :data:`robust_core.evaluation.PAGE_ATTACK_PARAMS` (the attack's own, e.g. ``{"pgd": {"steps": 10}}``, or the search's ``eps_max``,
    ``bisection_steps``, ``grid_points``). AutoAttack's parameters are its protocol's and cannot be changed.
    """

    models: Sequence[str]
    attacks: Sequence[str]
    eps: Sequence[float]
    n: int = 1000
    seed: int = 0
    attack_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset: str | None = None


@dataclass
class TrainGrid:
    """Training configurations: every method × λ × ε × seed, each method taking the values it has arguments for
    (``lam``: gfa, gnr; ``eps``: the adversarial methods), on top of ``base`` (a :class:`TrainConfig`'s fields) and
    ``method_kwargs``. Configurations that come out equal are trained once. With ``attacks`` and ``eval_eps``, every
    trained model is then evaluated like an :class:`EvalGrid` (``n`` images, ``eval_seed``)."""

    methods: Sequence[str] = ("standard",)
    lam: Sequence[float] = ()
    eps: Sequence[float] = ()
    seeds: Sequence[int] = (0,)
    base: dict[str, Any] = field(default_factory=dict)
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    attacks: Sequence[str] = ()
    eval_eps: Sequence[float] = ()
    n: int = 1000
    eval_seed: int = 0
    attack_params: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Job:
    """One independent unit of work: its result is written to the store or its caches when it finishes."""

    kind: str  # "minimal_eps" | "autoattack" | "train" | "call"
    model_id: str = ""
    dataset: str = ""
    attack: str = ""
    params: tuple = ()  # sorted (name, value) pairs: the evaluation cache's key
    n: int = 0
    seed: int = 0
    eps: float | None = None  # AutoAttack's fixed ε
    config: dict | None = None  # a TrainConfig as a dict; for "call", {"fn": "module:name", "kwargs": {...}}
    name: str = ""  # a "call" job's label

    @property
    def label(self) -> str:
        if self.kind == "call":
            return self.name or self.config["fn"]
        if self.kind == "train":
            return f"train {self.config['method']} seed {self.config['seed']}"
        eps = f" ε={self.eps:g}" if self.eps is not None else ""
        return f"{self.model_id[:8]} {self.attack}{eps}"


def function_job(fn: Callable[..., dict], *, label: str = "", **kwargs) -> Job:
    """A job that calls ``fn(store_root=..., device=..., **kwargs)`` where it runs (this process, or a Ray worker with
    the CPUs or GPU it declares) and returns its dict.

    For work the grids do not describe. ``fn`` must be a module-level function (a script's own functions work too:
    they are found by the script's path, which every node must see, like the store); ``kwargs`` plain data, as
    they travel to Ray workers. The function keeps its own cache: such a job is never skipped by
    :func:`run_jobs`, so a resumable function returns at once when its result is already on disk.
    """
    module = fn.__module__
    if module == "__main__":  # a script run directly: a worker imports it by its path
        module = "file:" + str(Path(sys.modules["__main__"].__file__).resolve())
    if "<locals>" in fn.__qualname__ or "<lambda>" in fn.__qualname__:
        raise SweepError(f"{fn.__qualname__} is not a module-level function: a worker could not import it")
    return Job("call", config={"fn": f"{module}:{fn.__qualname__}", "kwargs": dict(kwargs)}, name=label)


def _resolve_function(ref: str) -> Callable:
    """``module:name`` or ``file:/path/script.py:name`` (see :func:`function_job`) to the function."""
    import importlib
    import importlib.util

    where, _, name = ref.rpartition(":")
    if where.startswith("file:"):
        path = Path(where[len("file:"):])
        module_name = "_sweep_script_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
        module = sys.modules.get(module_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(module_name, path)
            if spec is None or not path.is_file():
                raise SweepError(f"cannot import {path}: a job's script must be on every node at the same path")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]  # a script that fails to import is not half-registered
                raise
    else:
        module = importlib.import_module(where)
    fn = module
    for part in name.split("."):
        fn = getattr(fn, part)
    return fn


class SweepResult(list):
    """The table's rows (a list of dicts) with the sweep's grid, every run's parameters and its job counts."""

    def __init__(self, rows=(), *, kind: str, grid: dict, runs: list[dict], reused: int, computed: int,
                 figures: dict | None = None):
        super().__init__(rows)
        self.kind, self.grid, self.runs, self.reused, self.computed = kind, grid, runs, reused, computed
        self.figures = figures or {}

    @property
    def jobs(self) -> int:
        return self.reused + self.computed

    def summary(self) -> str:
        return f"{self.jobs} jobs: {self.reused} reused from the caches, {self.computed} computed"


# ---- validation and planning --------------------------------------------------------------------------------------
def _shipped_ids(store: ModelStore) -> list[str]:
    from .shipped import shipped_models

    return [s.model_id for s in shipped_models() if s.model_id in store]


def resolve_models(store: ModelStore, models: Sequence[str], dataset: str | None = None) -> list[str]:
    """Store ids for ids, unique prefixes and ``"shipped"``, in order, without repeats."""
    if dataset is not None and dataset not in DATASETS:
        raise SweepError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
    if not models:
        raise SweepError("no model given: pass store ids (or unique prefixes) or 'shipped'")
    ids: list[str] = []
    for text in models:
        text = str(text).strip()
        if text == "shipped":
            found = _shipped_ids(store)
            if dataset is not None:
                found = [m for m in found if store.get(m).meta["config"]["dataset"] == dataset]
            if not found:
                raise SweepError(f"no shipped model{' of ' + dataset if dataset else ''} is installed in the store at "
                                 f"{store.root}; run `python -m robust_core.shipped` first")
            ids += found
            continue
        try:
            model_id = store.resolve(text)
        except ValueError as exc:
            raise SweepError(f"unknown model {text!r}: {exc}") from None
        if dataset is not None and store.get(model_id).meta["config"]["dataset"] != dataset:
            raise SweepError(f"model {model_id} is not a {dataset} model")
        ids.append(model_id)
    return list(dict.fromkeys(ids))


def _allowed_params(attack: str) -> set[str]:
    signature = inspect.signature(ATTACKS[attack].fn).parameters
    own = {name for name, p in signature.items() if p.kind == p.KEYWORD_ONLY}
    return (own | set(SEARCH_PARAMS)) - {"eps", "targeted", "target", "seed"}


def check_attacks(attacks: Sequence[str], attack_params: dict[str, dict] | None = None) -> list[str]:
    if not attacks:
        raise SweepError("no attack given; choose from " + ", ".join(sorted(ATTACKS)))
    attacks = list(dict.fromkeys(str(a).strip() for a in attacks))
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise SweepError(f"unknown attack {unknown[0]!r}; choose one of {', '.join(sorted(ATTACKS))}")
    for attack, params in (attack_params or {}).items():
        if attack not in attacks:
            raise SweepError(f"parameters given for {attack!r}, which is not among the attacks {attacks}")
        if not isinstance(params, dict):
            raise SweepError(f"the parameters of {attack} must be a JSON object, e.g. {{\"steps\": 10}}")
        if ATTACKS[attack].kind == "ensemble":
            raise SweepError(f"{attack} runs AutoAttack's fixed protocol; its parameters cannot be changed")
        bad = sorted(set(params) - _allowed_params(attack))
        if bad:
            raise SweepError(f"{attack} takes no parameter {bad}; it takes {sorted(_allowed_params(attack))}")
    return attacks


def check_eps(eps: Sequence[float], attacks: Sequence[str]) -> list[float]:
    try:
        values = [float(e) for e in eps]
    except (TypeError, ValueError):
        raise SweepError(f"ε values must be numbers, not {list(eps)!r}") from None
    if not values:
        raise SweepError("no ε value given")
    for attack in attacks:
        norm = ATTACKS[attack].norm
        for e in values:
            if not (math.isfinite(e) and 0 <= e <= EPS_LIMITS[norm]):
                raise SweepError(f"ε = {e:g} is out of range for {attack} ({norm.upper()}): it must be between 0 and "
                                 f"{EPS_LIMITS[norm]:g}")
    return sorted(set(values))


def check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= N_MAX:
        raise SweepError(f"n (the number of test images) must be an integer between 1 and {N_MAX:,}, not {n!r}")
    return n


def _load(dataset: str):
    try:
        return load_dataset(dataset)
    except DataNotFoundError as exc:
        raise SweepError(f"the {dataset} data is missing: {exc}") from None


def attack_params_for(attack: str, eps_grid: Sequence[float], overrides: dict | None = None) -> dict[str, Any]:
    """The minimal-ε computation's parameters (the cache key's): the page's defaults, ``eps_max`` the page's largest ε
    (or the grid's largest when above it) for budgeted attacks, then ``overrides``."""
    spec = ATTACKS[attack]
    params = dict(PAGE_ATTACK_PARAMS.get(attack, {}))
    if spec.kind != "minimal":
        top = max(eps_grid)
        params["eps_max"] = PAGE_EPS_MAX[spec.norm] if top <= PAGE_EPS_MAX[spec.norm] else top
    return {**params, **(overrides or {})}


def plan_evaluation(grid: EvalGrid, store: ModelStore) -> tuple[list[Job], dict]:
    """The jobs of an evaluation grid, in table order, and the grid as it was resolved (raises SweepError)."""
    model_ids = resolve_models(store, grid.models, grid.dataset)
    attacks = check_attacks(grid.attacks, grid.attack_params)
    eps_grid = check_eps(grid.eps, attacks)
    n = check_n(grid.n)
    if isinstance(grid.seed, bool) or not isinstance(grid.seed, int) or grid.seed < 0:
        raise SweepError(f"seed must be a non-negative integer, not {grid.seed!r}")
    datasets = {m: store.get(m).meta["config"]["dataset"] for m in model_ids}
    for dataset in sorted(set(datasets.values())):
        size = len(_load(dataset).test_y)
        if n > size:
            raise SweepError(f"n = {n} is more than the {size} test images of {dataset}")
    jobs = []
    for model_id in model_ids:
        for attack in attacks:
            if ATTACKS[attack].kind == "ensemble":
                jobs += [Job("autoattack", model_id, datasets[model_id], attack, (), n, grid.seed, float(e)) for e in eps_grid]
            else:
                params = attack_params_for(attack, eps_grid, grid.attack_params.get(attack))
                jobs.append(Job("minimal_eps", model_id, datasets[model_id], attack, tuple(sorted(params.items())), n,
                                grid.seed))
    resolved = {"models": model_ids, "attacks": attacks, "eps": eps_grid, "n": n, "seed": grid.seed,
                "attack_params": {j.attack: dict(j.params) for j in jobs if j.kind == "minimal_eps"}}
    return jobs, resolved


def train_configs(grid: TrainGrid) -> list:
    """The distinct :class:`TrainConfig` of a training grid (raises SweepError on a bad configuration)."""
    from .training import METHODS, TrainConfig

    if not grid.methods:
        raise SweepError("no training method given")
    unknown = [m for m in grid.methods if m not in METHODS]
    if unknown:
        raise SweepError(f"unknown training method {unknown[0]!r}; choose one of {', '.join(sorted(METHODS))}")
    for name, values in (("lam", grid.lam), ("eps", grid.eps)):
        if values and not any(name in METHODS[m].defaults for m in grid.methods):
            takers = sorted(m for m in METHODS if name in METHODS[m].defaults)
            raise SweepError(f"--{name} applies to none of the methods {list(grid.methods)}; it is an argument of "
                             f"{', '.join(takers)}")
    if not grid.seeds:
        raise SweepError("no seed given")
    configs = {}
    for method in grid.methods:
        takes = METHODS[method].defaults
        lams = list(grid.lam) if "lam" in takes and grid.lam else [None]
        epss = list(grid.eps) if "eps" in takes and grid.eps else [None]
        shared = {k: v for k, v in grid.method_kwargs.items() if k in takes}
        for lam in lams:
            for eps in epss:
                for seed in grid.seeds:
                    kwargs = dict(shared)
                    if lam is not None:
                        kwargs["lam"] = float(lam)
                    if eps is not None:
                        kwargs["eps"] = float(eps)
                    try:
                        config = TrainConfig(**{**grid.base, "method": method, "method_kwargs": kwargs, "seed": int(seed)})
                    except (TypeError, ValueError) as exc:
                        raise SweepError(str(exc)) from None
                    configs.setdefault(config.config_hash(), config)
    return list(configs.values())


def train_command(config) -> str:
    """The ``python -m robust_core.train`` command that trains ``config`` (stored in the model's metadata)."""
    from .training import TrainConfig

    d, c = TrainConfig().to_dict(), config.to_dict()
    args = []
    flags = {"dataset": "--dataset", "arch": "--arch", "method": "--method", "optimizer": "--optimizer", "lr": "--lr",
             "momentum": "--momentum", "weight_decay": "--weight-decay", "schedule": "--schedule", "epochs": "--epochs",
             "batch_size": "--batch-size", "dropout": "--dropout", "label_smoothing": "--label-smoothing",
             "train_subset": "--train-subset", "seed": "--seed"}
    for key, flag in flags.items():
        if c[key] != d[key]:
            args += [flag, str(c[key])]
    if c["arch_kwargs"]:
        args += ["--arch-kwargs", json.dumps(c["arch_kwargs"])]
    if c["method_kwargs"]:
        args += ["--method-kwargs", json.dumps(c["method_kwargs"])]
    return "python -m robust_core.train " + shlex.join(args)


# ---- the AutoAttack cache ------------------------------------------------------------------------------------------
def autoattack_path(store: ModelStore, job: Job) -> Path:
    """``<model>/evaluations/autoattack/<digest>.json``: the key is model, version, ε, n, seed and the chain's
    parameters, so a changed protocol is recomputed, never reused."""
    from .attacks.autoattack import VERSIONS

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
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)  # atomic: a reader (or a resumed sweep) sees no file or the whole one


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
        values = cache.get(EvalKey(job.model_id, job.attack, job.params, job.n, job.seed))
        return None if values is None else {"min_eps": values.tolist()}
    if job.kind == "autoattack":
        return read_autoattack(store, job)
    if job.kind == "train":
        from .training import TrainConfig

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
    from .attacks._common import predict
    from .device import get_device

    with _torch_threads(threads):
        store = ModelStore(store_root)
        dev = get_device(device)
        if job.kind == "call":
            return _resolve_function(job.config["fn"])(store_root=store_root, device=dev, **job.config["kwargs"])
        if job.kind == "train":
            from .training import TrainConfig

            config = TrainConfig.from_dict(job.config)
            _, entry, cached = store.train_or_load(config, device=dev, extra_meta={"command": train_command(config)})
            return _train_payload(entry, cached)
        data = load_dataset(job.dataset)
        x, y = data.test_x[: job.n].to(dev), data.test_y[: job.n].to(dev)
        if job.kind == "minimal_eps":
            values = cached_minimal_eps(store, EvaluationCache(store), job.model_id, x, y, attack=job.attack,
                                        seed=job.seed, on_progress=(lambda f: on_progress(f, "")) if on_progress else None,
                                        **dict(job.params))
            return {"min_eps": values.cpu().tolist()}
        if job.kind != "autoattack":
            raise ValueError(f"unknown job kind {job.kind!r}")
        hit = read_autoattack(store, job)
        if hit is not None:
            return hit
        from .attacks.autoattack import VERSIONS, run_autoattack

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
            report = run_autoattack(model, x, y, eps=float(job.eps), seed=job.seed, on_stage=stage_done, **spec.defaults)
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
        raise SweepError(f"the Ray backend needs Ray, which is not installed: pip install -r {RAY_REQUIREMENTS}") from None
    return ray


def _ray_env() -> dict:
    """Environment variables a Ray task needs: the data settings, and this checkout on the path (for a Ray that
    someone else started; the sweep's own ``ray.init`` also uploads the package, see :func:`_run_ray`)."""
    env = {k: os.environ[k] for k in ("ROBUST_DATA_DIR", "ROBUST_OFFLINE") if os.environ.get(k)}
    if os.environ.get("ROBUST_DEVICE", "").startswith("cpu"):
        env["ROBUST_DEVICE"] = "cpu"
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _run_ray(pending, store_root, on_done, *, threads, address, gpus):
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        # The package travels with the job (py_modules), so nodes without this checkout can import it; the rest of
        # the requirements (torch, ...) must be installed on every node.
        runtime_env = {"py_modules": [str(Path(__file__).resolve().parent)], "env_vars": _ray_env()}
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


def run_jobs(jobs: Sequence[Job], *, store: ModelStore, backend: str = "local", progress: bool = True,
             threads: int | None = None, ray_address: str | None = None, gpus: str | bool = "auto",
             desc: str = "sweep", on_result: Callable[[int, dict], None] | None = None) -> tuple[list[dict], list[dict]]:
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
        if job.kind == "minimal_eps":
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
                           computed=sum(i["status"] == "computed" for i in info))
    if not isinstance(grid, TrainGrid):
        raise SweepError(f"a grid is an EvalGrid or a TrainGrid, not {type(grid).__name__}")
    configs = train_configs(grid)
    evaluate = bool(grid.attacks or grid.eval_eps)
    if evaluate:  # check the evaluation half before training anything
        attacks = check_attacks(grid.attacks, grid.attack_params)
        check_eps(grid.eval_eps, attacks)
        check_n(grid.n)
    for dataset in sorted({c.dataset for c in configs}):
        _load(dataset)
    jobs = [Job("train", dataset=c.dataset, seed=c.seed, config=c.to_dict()) for c in configs]
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
                       reused=reused + evaluated.reused, computed=computed + evaluated.computed)


# ---- outputs -------------------------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def figures(result: SweepResult, store: ModelStore) -> dict:
    """The pages' figures for a sweep: {file stem: plotly Figure}.

    - ``accuracy_<dataset>_<attack>``: the Attack page's ε-slider figure, robust accuracy against ε for every model
      (from the cached minimal ε on 41 points up to the grid's largest ε, or AutoAttack's ε values);
    - ``comparison_<model>``: one model's curves under every L∞ attack (the page's attack comparison), when the sweep
      has several;
    - ``training_curves``: the Train page's curves of the trained models.
    """
    import plotly.graph_objects as go
    import plotly.io as pio

    from .plots import eps_slider_figure, training_curves_figure

    out = {}
    evaluation_runs = [r for r in result.runs if r["kind"] in ("minimal_eps", "autoattack")]
    if evaluation_runs:
        eps_grid = (result.grid.get("evaluation") or result.grid)["eps"]
        top = max(eps_grid) or 1e-6
        fine = [round(top * i / 40, 6) for i in range(41)]
        curves: dict[tuple, dict[str, tuple[list, list]]] = {}
        for r in evaluation_runs:
            per = curves.setdefault((r["dataset"], r["attack"]), {})
            if r["kind"] == "minimal_eps":
                job = Job("minimal_eps", r["model_id"], r["dataset"], r["attack"], tuple(sorted(r["params"].items())),
                          r["n"], r["seed"])
                values = EvaluationCache(store).get(EvalKey(job.model_id, job.attack, job.params, job.n, job.seed))
                if values is not None:
                    per[r["model"]] = (fine, accuracy_at(values, fine).tolist())
            else:
                xs, ys = per.get(r["model"], ([], []))
                per[r["model"]] = (xs + [r["eps"]], ys + [r["robust_accuracy"]])
        for (dataset, attack), per in curves.items():
            if not per:
                continue
            xs = sorted({x for xs, _ in per.values() for x in xs})
            lines = {}
            for model, (mx, my) in per.items():
                lookup = dict(zip(mx, my))
                if all(x in lookup for x in xs):
                    lines[model] = [lookup[x] for x in xs]
            if not lines:
                continue
            fig = eps_slider_figure(xs, lines, norm=ATTACKS[attack].norm)
            # Built unvalidated for the page's speed, with the template as a name: write_html needs the template itself.
            fig.layout.template = pio.templates["plotly_white"]
            # The slider rewrites the title at every ε: each frame's title says which attack and dataset too.
            prefix = f"{ATTACKS[attack].title} · {dataset} · "
            fig.layout.title.text = prefix + fig.layout.title.text
            for frame in fig.frames:
                frame.layout.title.text = prefix + frame.layout.title.text
            out[f"accuracy_{dataset}_{attack}"] = fig
        by_model: dict[str, dict[str, list]] = {}
        for (dataset, attack), per in curves.items():
            if ATTACKS[attack].norm != "linf" or ATTACKS[attack].kind == "ensemble":
                continue
            for model, (mx, my) in per.items():
                by_model.setdefault(model, {})[attack] = my
        for model, per_attack in by_model.items():
            if len(per_attack) < 2:
                continue
            fig = go.Figure([go.Scatter(x=fine, y=acc, mode="lines", name=ATTACKS[a].title, line=dict(width=3))
                             for a, acc in per_attack.items()])
            fig.update_layout(template="plotly_white", height=420, title=f"{model}: attack comparison",
                              xaxis_title="ε (L∞, pixel scale 0–1)",
                              yaxis=dict(title="accuracy under attack", tickformat=".0%", range=[0, 1.02]))
            out[f"comparison_{model}"] = fig
    trained = [r for r in result.runs if r["kind"] == "train"]
    if trained:
        histories = {}
        for r in trained:
            entry = store.get(r["model_id"])
            if entry.meta.get("history"):
                histories[entry.name] = entry.meta["history"]
        if histories:
            out["training_curves"] = training_curves_figure(histories)
    return out


def model_warnings(result: SweepResult, store: ModelStore) -> dict[str, list[str]]:
    """The page's gradient-masking warnings per model, from its L∞ attacks' curves (when it has several)."""
    per_model: dict[str, dict[str, list[float]]] = {}
    grids: dict[str, list[float]] = {}
    cache = EvaluationCache(store)
    for r in result.runs:
        if r["kind"] != "minimal_eps" or r["norm"] != "linf":
            continue
        values = cache.get(EvalKey(r["model_id"], r["attack"], tuple(sorted(r["params"].items())), r["n"], r["seed"]))
        if values is None:
            continue
        top = max((result.grid.get("evaluation") or result.grid)["eps"]) or 1e-6
        grid = [round(top * i / 40, 6) for i in range(41)]
        grids[r["model_id"]] = grid
        per_model.setdefault(r["model_id"], {})[r["attack"]] = accuracy_at(values, grid).tolist()
    return {m: w for m, curves in per_model.items() if len(curves) > 1
            for w in [attack_comparison_warnings(curves, grids[m])] if w}


CSV_COLUMNS = {
    "evaluate": ["model_id", "model", "dataset", "attack", "norm", "eps", "robust_accuracy", "n", "seed", "params",
                 "protocol"],
    "train": ["model_id", "model", "dataset", "arch", "method", "lam", "train_eps", "seed", "epochs", "n_train",
              "test_acc", "wall_time_s"],
    "train+evaluate": ["model_id", "model", "dataset", "arch", "method", "lam", "train_eps", "seed", "epochs", "n_train",
                       "test_acc", "attack", "norm", "eps", "robust_accuracy", "n", "attack_seed", "params", "protocol"],
}


def write_outputs(result: SweepResult, out_dir: str | os.PathLike, store: ModelStore) -> list[Path]:
    """``results.csv``, ``results.json`` and the figures' HTML files in ``out_dir``: the paths written."""
    from .store import library_versions

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    columns = CSV_COLUMNS[result.kind]
    path = out / "results.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result)
    written.append(path)
    payload = {"kind": result.kind, "grid": result.grid, "rows": list(result), "runs": result.runs,
               "warnings": model_warnings(result, store),
               "jobs": {"total": result.jobs, "reused": result.reused, "computed": result.computed},
               "store": str(store.root), "versions": library_versions()}
    path = out / "results.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    written.append(path)
    for stem, fig in figures(result, store).items():
        path = out / f"{_slug(stem)}.html"
        fig.write_html(path, include_plotlyjs="cdn", auto_play=False)
        written.append(path)
    return written


def print_table(result: SweepResult, file=None) -> None:
    file = file if file is not None else sys.stdout
    if result.kind == "train":
        width = max([len(r["model"]) for r in result] + [5])
        print(f"{'model':{width}s}  {'id':16s}  test accuracy", file=file)
        for r in result:
            print(f"{r['model']:{width}s}  {r['model_id']}  {100 * r['test_acc']:6.2f}%", file=file)
        return
    groups: dict[tuple, dict[str, dict[float, float]]] = {}
    for r in result:
        groups.setdefault((r["attack"], r["n"]), {}).setdefault(r["model"], {})[r["eps"]] = r["robust_accuracy"]
    for (attack, n), per_model in groups.items():
        eps = sorted({e for accs in per_model.values() for e in accs})
        width = max([len(m) for m in per_model] + [5])
        print(f"{ATTACKS[attack].label}, first {n} test images", file=file)
        print(f"{'model':{width}s} " + " ".join(f"{e:>7g}" for e in eps), file=file)
        for model, accs in per_model.items():
            print(f"{model:{width}s} " + " ".join(f"{100 * accs[e]:6.1f}%" if e in accs else "      -" for e in eps),
                  file=file)


# ---- command line --------------------------------------------------------------------------------------------------
def _split(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _numbers(text: str, flag: str, kind=float) -> list:
    try:
        return [kind(t) for t in _split(text)]
    except ValueError:
        raise SweepError(f"{flag} must be a comma list of numbers, not {text!r}") from None


def _json_object(text: str, flag: str) -> dict:
    from .train import parse_json_object

    try:
        return parse_json_object(text, flag)
    except ValueError as exc:
        raise SweepError(str(exc)) from None


def _common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="sweep-results", help="folder for results.csv, results.json and the figures")
    p.add_argument("--store", default=None, help="store folder (default: $ROBUST_STORE_DIR or the user cache); on a "
                                                 "Ray cluster, a folder every node shares")
    p.add_argument("--ray", action="store_true", help="run the jobs as Ray tasks ($RAY_ADDRESS, or Ray on this machine)")
    p.add_argument("--ray-address", default=None, help="a Ray cluster's address (implies --ray)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per job (Ray: the CPUs each task declares, default 1)")
    p.add_argument("--no-gpu", action="store_true", help="on Ray, do not ask for GPUs even where the cluster has some")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser(mode: str) -> argparse.ArgumentParser:
    if mode == "train":
        p = argparse.ArgumentParser(prog="python -m robust_core.sweep train",
                                    description="Train a grid of configurations into the store (skipping those already "
                                                "there), optionally evaluate them.")
        p.add_argument("--method", default="standard", help="training methods, comma list (e.g. gfa,pgd_at)")
        p.add_argument("--lam", default="", help="λ values, comma list (methods with a λ: gfa, gnr)")
        p.add_argument("--eps", default="", help="training ε values, comma list (adversarial methods)")
        p.add_argument("--seed", default="0", help="seeds, comma list")
        p.add_argument("--method-kwargs", default="{}", help="JSON object of further method arguments, for every "
                                                             "method that takes them")
        p.add_argument("--dataset", default="mnist", choices=sorted(DATASETS))
        p.add_argument("--arch", default="cnn")
        p.add_argument("--arch-kwargs", default="{}", help="JSON object of architecture arguments")
        p.add_argument("--epochs", type=int, default=None)
        p.add_argument("--batch-size", type=int, default=None)
        p.add_argument("--lr", type=float, default=None)
        p.add_argument("--n-train", type=int, default=None, help="train on the first N training images")
        p.add_argument("--attacks", default="", help="evaluate every trained model under these attacks (comma list)")
        p.add_argument("--eval-eps", default="", help="ε grid of that evaluation (start:stop:step or a comma list)")
        p.add_argument("--n", type=int, default=1000, help="test images of that evaluation")
        p.add_argument("--attack-seed", type=int, default=0)
        p.add_argument("--attack-params", default="{}", help='JSON: per attack, its parameters ({"pgd": {"steps": 10}})')
    else:
        p = argparse.ArgumentParser(prog="python -m robust_core.sweep",
                                    description="Evaluate models × attacks × ε on the first n test images; "
                                                "`python -m robust_core.sweep train --help` for a training grid.")
        p.add_argument("--models", action="append", required=True,
                       help="store ids or unique prefixes, comma list or repeated; 'shipped': every shipped model "
                            "installed in the store")
        p.add_argument("--dataset", default=None, help="only the models of this dataset (with 'shipped')")
        p.add_argument("--attacks", default="pgd", help="comma list: " + ", ".join(sorted(ATTACKS)))
        p.add_argument("--eps", default="0:0.3:0.05", help="start:stop:step or a comma list, in each attack's norm")
        p.add_argument("--n", type=int, default=1000, help=f"first N test images (1 to {N_MAX:,})")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--attack-params", default="{}", help='JSON: per attack, its parameters ({"pgd": {"steps": 10}})')
    _common_arguments(p)
    return p


def grid_from_args(mode: str, args: argparse.Namespace) -> EvalGrid | TrainGrid:
    try:
        attack_params = _json_object(args.attack_params, "--attack-params")
        if mode == "train":
            base: dict[str, Any] = {"dataset": args.dataset, "arch": args.arch,
                                    "arch_kwargs": _json_object(args.arch_kwargs, "--arch-kwargs")}
            for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                               ("train_subset", args.n_train)):
                if value is not None:
                    base[key] = value
            return TrainGrid(methods=_split(args.method), lam=_numbers(args.lam, "--lam"),
                             eps=_numbers(args.eps, "--eps"), seeds=_numbers(args.seed, "--seed", int), base=base,
                             method_kwargs=_json_object(args.method_kwargs, "--method-kwargs"),
                             attacks=_split(args.attacks),
                             eval_eps=parse_eps_grid(args.eval_eps) if args.eval_eps else [], n=args.n,
                             eval_seed=args.attack_seed, attack_params=attack_params)
        models = [m for text in args.models for m in _split(text)]
        return EvalGrid(models=models, attacks=_split(args.attacks), eps=parse_eps_grid(args.eps), n=args.n,
                        seed=args.seed, attack_params=attack_params, dataset=args.dataset)
    except ValueError as exc:
        raise SweepError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    mode = "evaluate"
    if argv and argv[0] in ("train", "evaluate"):
        mode, argv = argv[0], argv[1:]
    args = build_parser(mode).parse_args(argv)
    backend = "ray" if (args.ray or args.ray_address or os.environ.get("RAY_ADDRESS")) else "local"
    try:
        grid = grid_from_args(mode, args)
        if args.threads is not None and args.threads < 1:
            raise SweepError("--threads must be at least 1")
        store = ModelStore(args.store)
        if backend == "ray":
            import_ray()
        result = run_sweep(grid, store=store, backend=backend, progress=not args.quiet, threads=args.threads,
                           ray_address=args.ray_address, gpus=False if args.no_gpu else "auto")
    except (SweepError, KeyError, DataNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the jobs that finished are cached; run the same command again to resume.",
              file=sys.stderr)
        return 130
    print_table(result)
    written = write_outputs(result, args.out, store)
    print(result.summary())
    print(f"written to {Path(args.out)}: " + ", ".join(p.name for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
