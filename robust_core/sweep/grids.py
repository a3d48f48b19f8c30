"""The sweep's grids, its jobs and their validation: what to run, checked before anything runs."""
from __future__ import annotations

import hashlib
import inspect
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..attacks import ATTACKS, eps_ceiling
from ..data import DATASETS, DataNotFoundError, dataset_info, load_dataset
from ..evaluation import CURVE_ATTACK_PARAMS, AutoAttackKey, curve_eps_max
from ..store import ModelStore

N_MAX = 10_000
# minimal_eps' own arguments, accepted in attack parameters beside the attack's.
SEARCH_PARAMS = ("eps_max", "bisection_steps", "grid_points", "batch_size")
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
    :data:`robust_core.evaluation.CURVE_ATTACK_PARAMS` (the attack's own, e.g. ``{"pgd": {"steps": 10}}``, or the
    search's ``eps_max``, ``bisection_steps``, ``grid_points``). AutoAttack's parameters are its protocol's and cannot
    be changed.
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


# ---- jobs: one class per kind ---------------------------------------------------------------------------------------
@dataclass
class MinimalEpsJob:
    """The per-example minimal ε of one (model, attack) on the first ``n`` test images, cached beside the model
    (:func:`robust_core.evaluation.cached_minimal_eps`): accuracy at every ε of a grid is then a lookup."""

    kind: ClassVar[str] = "minimal_eps"
    model_id: str
    dataset: str
    attack: str
    params: tuple = ()  # sorted (name, value) pairs: the evaluation cache's key
    n: int = 0
    seed: int = 0

    @property
    def label(self) -> str:
        return f"{self.model_id[:8]} {self.attack}"


@dataclass(frozen=True)
class AutoAttackJob(AutoAttackKey):
    """AutoAttack of one (model, ε) on the first ``n`` test images of ``dataset``: its key in the AutoAttack cache
    (:func:`robust_core.evaluation.cached_autoattack`, the Attack page's cache too), and the images' dataset."""

    kind: ClassVar[str] = "autoattack"
    dataset: str = ""

    @property
    def label(self) -> str:
        return f"{self.model_id[:8]} {self.attack} ε={self.eps:g}"


@dataclass
class TrainJob:
    """The training of one configuration (:meth:`robust_core.store.ModelStore.train_or_load`: once per store)."""

    kind: ClassVar[str] = "train"
    config: dict  # a TrainConfig as a dict: plain data, as it travels to Ray workers

    @property
    def dataset(self) -> str:
        return self.config["dataset"]

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def label(self) -> str:
        return f"train {self.config['method']} seed {self.config['seed']}"


@dataclass
class CallJob:
    """A call of a module-level function, ``fn(store_root=..., device=..., **kwargs)`` (:func:`function_job`)."""

    kind: ClassVar[str] = "call"
    fn: str  # "module:name" or "file:/path/script.py:name"
    kwargs: dict = field(default_factory=dict)  # plain data, as it travels to Ray workers
    name: str = ""  # its label

    @property
    def label(self) -> str:
        return self.name or self.fn


# One independent unit of work: its result is written to the store or its caches when it finishes.
SweepJob = MinimalEpsJob | AutoAttackJob | TrainJob | CallJob


def Job(kind: str, model_id: str = "", dataset: str = "", attack: str = "", params: tuple = (), n: int = 0,
        seed: int = 0, eps: float | None = None, config: dict | None = None, name: str = "") -> SweepJob:
    """The job of ``kind`` ("minimal_eps", "autoattack", "train", "call") from the fields of every kind, for callers
    that name the kind (``Job("autoattack", model_id, dataset, attack, (), n, seed, eps)``); each kind takes its own:
    a "train" job its ``config``, a "call" job ``config={"fn": ..., "kwargs": ...}`` and ``name``."""
    if kind == "minimal_eps":
        return MinimalEpsJob(model_id, dataset, attack, tuple(params), n, seed)
    if kind == "autoattack":
        return AutoAttackJob(model_id, attack, float(eps), n, seed, dataset)
    if kind == "train":
        return TrainJob(dict(config))
    if kind == "call":
        return CallJob(config["fn"], dict(config.get("kwargs", {})), name)
    raise SweepError(f"unknown job kind {kind!r}; one of minimal_eps, autoattack, train, call")


def function_job(fn: Callable[..., dict], *, label: str = "", **kwargs) -> CallJob:
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
    return CallJob(f"{module}:{fn.__qualname__}", dict(kwargs), label)


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
                 figures: dict | None = None, reused_from_larger: int = 0):
        super().__init__(rows)
        self.kind, self.grid, self.runs, self.reused, self.computed = kind, grid, runs, reused, computed
        self.figures = figures or {}
        self.reused_from_larger = reused_from_larger  # of the reused: read from a result on more test images

    @property
    def jobs(self) -> int:
        return self.reused + self.computed

    def summary(self) -> str:
        text = f"{self.jobs} jobs: {self.reused} reused from the caches, {self.computed} computed"
        if self.reused_from_larger:
            text += (f" ({self.reused_from_larger} of the reused read from a cached result on more test images, "
                     "the same search)")
        return text


# ---- validation and planning --------------------------------------------------------------------------------------
def _shipped_ids(store: ModelStore) -> list[str]:
    from ..shipped import shipped_models

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


def check_eps(eps: Sequence[float], attacks: Sequence[str], datasets: Sequence[str] = ("mnist",)) -> list[float]:
    """The distinct ε values, sorted; SweepError for one that is not a number between 0 and the largest distance
    between two images of ``datasets`` in each attack's norm (:func:`robust_core.attacks.eps_ceiling`)."""
    try:
        values = [float(e) for e in eps]
    except (TypeError, ValueError):
        raise SweepError(f"ε values must be numbers, not {list(eps)!r}") from None
    if not values:
        raise SweepError("no ε value given")
    for attack in attacks:
        norm = ATTACKS[attack].norm
        # Every model's images must give the ε a meaning: the smallest images have the lowest ceiling.
        limit = min(eps_ceiling(norm, dataset_info(d).shape) for d in datasets)
        for e in values:
            if not (math.isfinite(e) and 0 <= e <= limit):
                raise SweepError(f"ε = {e:g} is out of range for {attack} ({norm.upper()}): it must be between 0 and "
                                 f"{limit:.4g}")
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


def attack_params_for(attack: str, eps_grid: Sequence[float], overrides: dict | None = None,
                      dataset: str | None = None) -> dict[str, Any]:
    """The minimal-ε computation's parameters (the cache key's): the curves' defaults, ``eps_max`` their largest ε
    (or the grid's largest when above it) for budgeted attacks, then ``overrides``."""
    spec = ATTACKS[attack]
    params = dict(CURVE_ATTACK_PARAMS.get(attack, {}))
    if spec.kind != "minimal":
        top = max(eps_grid)
        default = curve_eps_max(spec.norm, dataset)  # the Attack page's, so that both share cache entries
        params["eps_max"] = default if top <= default else top
    return {**params, **(overrides or {})}


def plan_evaluation(grid: EvalGrid, store: ModelStore) -> tuple[list[SweepJob], dict]:
    """The jobs of an evaluation grid, in table order, and the grid as it was resolved (raises SweepError)."""
    model_ids = resolve_models(store, grid.models, grid.dataset)
    datasets = {m: store.get(m).meta["config"]["dataset"] for m in model_ids}
    attacks = check_attacks(grid.attacks, grid.attack_params)
    eps_grid = check_eps(grid.eps, attacks, sorted(set(datasets.values())))
    n = check_n(grid.n)
    if isinstance(grid.seed, bool) or not isinstance(grid.seed, int) or grid.seed < 0:
        raise SweepError(f"seed must be a non-negative integer, not {grid.seed!r}")
    for dataset in sorted(set(datasets.values())):
        size = len(_load(dataset).test_y)
        if n > size:
            raise SweepError(f"n = {n} is more than the {size} test images of {dataset}")
    jobs = []
    for model_id in model_ids:
        for attack in attacks:
            if ATTACKS[attack].kind == "ensemble":
                jobs += [AutoAttackJob(model_id, attack, float(e), n, grid.seed, datasets[model_id]) for e in eps_grid]
            else:
                params = attack_params_for(attack, eps_grid, grid.attack_params.get(attack), datasets[model_id])
                jobs.append(MinimalEpsJob(model_id, datasets[model_id], attack, tuple(sorted(params.items())), n,
                                          grid.seed))
    resolved = {"models": model_ids, "attacks": attacks, "eps": eps_grid, "n": n, "seed": grid.seed,
                "attack_params": {j.attack: dict(j.params) for j in jobs if isinstance(j, MinimalEpsJob)}}
    return jobs, resolved


def train_configs(grid: TrainGrid) -> list:
    """The distinct :class:`TrainConfig` of a training grid (raises SweepError on a bad configuration)."""
    from ..training import METHODS, TrainConfig

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
                        config = TrainConfig(**{**grid.base, "method": method, "method_kwargs": kwargs,
                                                "seed": int(seed)})
                    except (TypeError, ValueError) as exc:
                        raise SweepError(str(exc)) from None
                    configs.setdefault(config.config_hash(), config)
    return list(configs.values())
