"""Robustness evaluation: accuracy under attack over an eps grid, per-example minimal eps, and their caches.

The per-example minimal eps is what makes an eps slider instant: once each test image's
smallest breaking eps is known, accuracy at any eps is ``mean(min_eps > eps)``, a lookup.

    python -m robust_core.evaluate --model <id> --attack pgd --eps 0.05:0.3:0.05

Modules: :mod:`.search` (the ε search: :func:`minimal_eps`, :func:`robust_accuracy`, transfer), :mod:`.params` (the
parameters every view shares: the curves' and the comparison's defaults, measured grids), :mod:`.progress` (the
progress estimate), :mod:`.cache` (the minimal-ε cache and the AutoAttack cache), :mod:`.sanity` (warnings about a
model or a result). The attack comparison's masking rule is :mod:`robust_core.masking`, re-exported here.
"""
from ..attacks import ATTACKS
from ..masking import (
    MASKING_EXPLANATION,
    MASKING_SECTION,
    SINGLE_STEP_TRAINING,
    attack_comparison_notes,
    attack_comparison_warnings,
    single_step_masking,
    training_method_of,
)
from .cache import (
    ATTACK_CODE_VERSIONS,
    AUTOATTACK_CACHE_VERSION,
    MINIMAL_EPS_VERSION,
    AutoAttackKey,
    EvalKey,
    EvaluationCache,
    autoattack_path,
    autoattack_result,
    cached_autoattack,
    cached_minimal_eps,
    cached_transfer_eps,
    is_transfer,
    read_autoattack,
    transfer_key,
)
from .params import (
    COMPARISON_SEARCH,
    CURVE_ATTACK_PARAMS,
    CURVE_EPS_MAX,
    DATASET_CURVE_EPS_MAX,
    comparison_params,
    curve_eps_max,
    measured_eps_grid,
    parse_eps_grid,
)
from .progress import stage_fractions
from .sanity import model_sanity_warnings, sanity_warnings
from .search import (
    ATTACK_BATCH,
    accuracy_at,
    minimal_eps,
    perturbation_stats,
    robust_accuracy,
    transfer_minimal_eps,
)

__all__ = ["ATTACKS", "ATTACK_BATCH", "ATTACK_CODE_VERSIONS", "AUTOATTACK_CACHE_VERSION", "COMPARISON_SEARCH",
           "CURVE_ATTACK_PARAMS", "CURVE_EPS_MAX", "DATASET_CURVE_EPS_MAX", "MASKING_EXPLANATION", "MASKING_SECTION",
           "MINIMAL_EPS_VERSION", "curve_eps_max",
           "SINGLE_STEP_TRAINING", "AutoAttackKey", "EvalKey", "EvaluationCache", "accuracy_at",
           "attack_comparison_notes", "attack_comparison_warnings", "autoattack_path", "autoattack_result",
           "cached_autoattack", "cached_minimal_eps", "cached_transfer_eps", "comparison_params", "is_transfer",
           "measured_eps_grid", "minimal_eps", "model_sanity_warnings", "parse_eps_grid", "perturbation_stats",
           "read_autoattack", "robust_accuracy", "sanity_warnings", "single_step_masking", "stage_fractions",
           "training_method_of", "transfer_key", "transfer_minimal_eps"]
