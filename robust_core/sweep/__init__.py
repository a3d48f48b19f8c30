"""Sweeps: a grid of evaluations (models × attacks × ε) or of trainings, run as independent jobs that resume.

    python -m robust_core.sweep --models shipped --attacks pgd,fgsm --eps 0.05:0.3:0.05 --n 500 --out sweep/
    python -m robust_core.sweep --models 2a34,b2b7 --attacks autoattack_standard --eps 0.3 --n 1000 --out aa/
    python -m robust_core.sweep train --method gfa --lam 0.1,1 --seed 0,1 --epochs 1 --n-train 2000 --out gfa/
    python -m robust_core.sweep train --method pgd_at --eps 0.1,0.3 --attacks pgd --eval-eps 0.1,0.3 --n 500 --out at/
    RAY_ADDRESS=<head>:6379 python -m robust_core.sweep ...      # or --ray: the same jobs as Ray tasks

Jobs, one class per kind, and what makes them resumable (every finished job is on disk, written atomically, before
the next starts):
- :class:`MinimalEpsJob`: per-example minimal ε of one (model, attack),
  :func:`robust_core.evaluation.cached_minimal_eps`, cached beside the model like the Attack page's results (same
  parameters, same cache entries: the page, the shipped evaluations and the sweep reuse each other's work); accuracy
  at every ε of the grid is then a lookup;
- :class:`AutoAttackJob`: AutoAttack (``autoattack_standard``, ``autoattack_fast``) of one (model, ε), the chain at
  that fixed ε, its result cached in ``<model>/evaluations/autoattack/<digest>.json``
  (:func:`robust_core.evaluation.cached_autoattack`, the Attack page's cache too);
- :class:`TrainJob`: training of one configuration, :meth:`robust_core.store.ModelStore.train_or_load`; a
  configuration already in the store is not trained again;
- :class:`CallJob`: a function call (:func:`function_job`, from Python only), work the grids do not describe, e.g. the
  DeepDefense report's per-attack tables, run by the same backends; the function keeps its own cache.
A minimal-ε job whose own entry is missing reads the first n values of a result cached for more images of the same
model, attack, parameters and seed, the results shipped with the shipped models (first 1,000 test images) included,
when the search gives each image the same value either way (FGSM; PGD L∞ with one random start):
:mod:`robust_core.sweep.reuse`. An interrupted sweep (Ctrl-C, SIGKILL, a lost Ray node) loses only the jobs in flight:
the same command again reuses what finished and computes the rest, and says how many of each.

Outputs (``--out DIR``): ``results.csv`` (one row per model, attack and ε, or per trained configuration),
``results.json`` (the same rows, the grid, and every run's parameters: attack parameters, n, seed, AutoAttack's
protocol and stages) and the pages' figures as Plotly HTML that opens offline (``plotly.min.js`` written once beside
them): robust accuracy against ε per attack across models (the Attack page's ε-slider figure), per model across
attacks, and training curves.

Modules: :mod:`.grids` (grids, jobs, validation), :mod:`.jobs` (running one job), :mod:`.reuse`
(results on more images), :mod:`.backends` (local, Ray), :mod:`.run` (:func:`run_sweep`), :mod:`.outputs`,
:mod:`.cli`.
"""
from ..evaluation import AUTOATTACK_CACHE_VERSION, autoattack_path, read_autoattack, stage_fractions  # noqa: F401
from .backends import _ray_env, _run_local, _run_ray, import_ray, run_jobs  # noqa: F401
from .cli import build_parser, grid_from_args, main  # noqa: F401
from .grids import (  # noqa: F401
    BACKENDS,
    N_MAX,
    RAY_REQUIREMENTS,
    SEARCH_PARAMS,
    AutoAttackJob,
    CallJob,
    EvalGrid,
    Job,
    MinimalEpsJob,
    SweepError,
    SweepJob,
    SweepResult,
    TrainGrid,
    TrainJob,
    _resolve_function,
    attack_params_for,
    check_attacks,
    check_eps,
    check_n,
    function_job,
    plan_evaluation,
    resolve_models,
    train_configs,
)
from ..training.flags import train_command  # noqa: F401
from .jobs import _ray_task, cached_result, execute_job  # noqa: F401
from .outputs import (  # noqa: F401
    CSV_COLUMNS,
    PLOTLYJS,
    figures,
    model_warnings,
    print_table,
    write_outputs,
    write_plotlyjs,
)
from .reuse import effective_params, find_minimal_eps, find_superset, prefix_stable  # noqa: F401
from .run import run_sweep  # noqa: F401
