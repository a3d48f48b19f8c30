"""The parameters every view of a result computes with, so that they share cache entries: the curves' defaults, the
attack comparison's, the ε at which a coarse search is a measurement, and ε grids written as text."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..attacks import get_attack

# The curves' defaults: the largest eps per norm, and each attack's parameters (the Attack page's controls start at
# these). The page, the shipped evaluations (robust_core.precomputed) and sweeps compute with them, so that they share
# cache entries.
CURVE_EPS_MAX = {"linf": 0.4, "l2": 4.0, "l1": 40.0}
# CIFAR-10's, in the field's units: four times its usual radii (8/255 L∞, 0.5 L2), so that the curves reach zero
# for standard networks and show where robust ones hold; the digits' 0.4 would squeeze CIFAR-10's whole curve into
# the first tenth of the axis.
DATASET_CURVE_EPS_MAX = {"cifar10": {"linf": 32 / 255, "l2": 2.0, "l1": 60.0}}


def curve_eps_max(norm: str, dataset: str | None = None) -> float:
    """The curves' largest ε of ``norm`` for ``dataset`` (the digits' when None or not listed)."""
    return DATASET_CURVE_EPS_MAX.get(dataset, CURVE_EPS_MAX)[norm]
CURVE_ATTACK_PARAMS: dict[str, dict[str, Any]] = {
    "fgsm": {}, "pgd": {"steps": 40, "restarts": 1}, "pgd_l2": {"steps": 40, "restarts": 1},
    "apgd_ce": {"steps": 100}, "apgd_dlr": {"steps": 100}, "apgd_t": {"steps": 100},
    "square": {"n_queries": 1000}, "cw_l2": {"steps": 100}, "ead": {"steps": 100},
}
# The attack comparison's search for the black-box Square attack: 3 bisection steps, so its accuracy is measured at
# every eps_max / 8 (0.05 for L-inf) instead of every eps_max / 128. Why: every bisection round costs each image that
# stays robust its full 1,000 queries, and about half the images stay robust in each round; 3 rounds instead of 7 made
# the comparison's Square 2.5-3.2x faster on the FGSM-AT CNN (500 images, 1 thread; benchmarks/attack_speed.py
# --comparison), its accuracy at every 0.05 within the search's seed-to-seed noise of the 7-step one.
# Square is there to expose masked gradients, which a 0.05 grid shows; the page says so and draws it on its grid.
COMPARISON_SEARCH: dict[str, dict[str, Any]] = {"square": {"bisection_steps": 3}}


def comparison_params(attack: str, dataset: str | None = None) -> dict[str, Any]:
    """The attack comparison's parameters for ``attack`` on ``dataset`` (the cache key's): the curves' largest eps
    for its norm, their defaults, and :data:`COMPARISON_SEARCH`'s coarse search for black-box attacks."""
    return {"eps_max": curve_eps_max(get_attack(attack).norm, dataset), **CURVE_ATTACK_PARAMS.get(attack, {}),
            **COMPARISON_SEARCH.get(attack, {})}


def measured_eps_grid(params: dict[str, Any], default: Sequence[float]) -> list[float]:
    """The eps values at which a minimal-eps result computed with ``params`` is an accuracy measurement.

    A coarse bisection (fewer than 7 steps) brackets each threshold only to eps_max / 2^steps: between those values
    its accuracy is the value below, a staircase that reads too high, so it is shown and compared on its own grid.
    Finer searches are read on ``default`` (the page's 41 frames)."""
    steps = params.get("bisection_steps")
    if steps is None or steps >= 7 or "eps_max" not in params:
        return [float(e) for e in default]
    return [round(params["eps_max"] * k / 2**steps, 9) for k in range(2**steps + 1)]


def parse_eps_grid(text: str) -> list[float]:
    """'0.05:0.3:0.05' (start:stop:step, stop included) or '0.1,0.2,0.3'."""
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            n = int(math.floor((stop - start) / step + 1e-9)) + 1
            return [round(start + i * step, 10) for i in range(n)]
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"eps grid {text!r} is not 'start:stop:step' (e.g. 0.05:0.3:0.05) or a comma list") from None
