"""Class challenges kept as data (``assets/challenges/*.toml``), like the lecture paths: a lecturer adds one by
writing a file. Three kinds:

``fool`` (fool it by hand): every student gets the same test image and paints a perturbation inside a budget; the board
ranks the perturbations that make a model misread it, smallest first, beside the lab's own minimal perturbations::

    kind = "fool"
    title = "Fool it by hand"
    task = "Paint on the 7 until the network misreads it, with as small a change as you can."
    dataset = "mnist"
    models = ["mnist_cnn_standard", "mnist_cnn_pgd_at"]   # shipped model file stems; scored on each
    image = 0                                            # test image index
    norm = "linf"                                        # "linf" or "l2": the budget's and the ranking's norm
    budget = 0.3                                         # the default budget (the lecturer may change it per run)

``guess`` (guess the number): a question whose answer the lab measured; the answers' histogram, then the measured
value on its curve::

    kind = "guess"
    title = "Guess the ε"
    task = "At which L∞ ε does the PGD-trained CNN fall below 50% under PGD-40?"
    dataset = "mnist"
    models = ["mnist_cnn_pgd_at"]
    [answer]
    measure = "eps_below"      # the smallest ε where the model's accuracy under ``attack`` is below ``accuracy``
    attack = "pgd"
    accuracy = 0.5
    min = 0.0                  # the answers' range (the widget's, and what the server accepts)
    max = 0.5

``split`` (draw to split the models): a drawing that model A reads as ``target`` and model B does not, scored by both
and by a k-NN on raw pixels (what the digit looks like to a nearest-neighbour reader)::

    kind = "split"
    title = "Draw a 7 the standard CNN reads as a 1"
    task = "..."
    dataset = "mnist"
    models = ["mnist_cnn_standard", "mnist_cnn_pgd_at"]   # A, then B
    target = 1
    drawn = 7                                            # optional: the class the drawing should look like

A file that cannot be read or holds a bad value is reported, never fatal: the other challenges still show.
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

CHALLENGES_DIR = Path(__file__).resolve().parents[2] / "assets" / "challenges"
KINDS = ("fool", "guess", "split")
NORMS = ("linf", "l2")
MEASURES = ("eps_below",)
TITLE_MAX, TASK_MAX = 80, 400  # characters: a projector's heading and a student's task fit on one screen
TEST_IMAGES = 10_000  # the test split of MNIST, Fashion-MNIST and CIFAR-10 alike


def budget_limit(norm: str, pixels: int) -> float:
    """The largest budget a fool challenge may set, in pixel units ([0, 1] per pixel): L∞ 1 (any pixel anywhere);
    L2 the norm of an image turned from all black to all white, sqrt(pixels) (28 on MNIST, 55.4 on CIFAR-10)."""
    return 1.0 if norm == "linf" else math.sqrt(pixels)


@dataclass(frozen=True)
class Answer:
    """A guess challenge's measured answer: how to measure it, and the range answers must lie in."""

    measure: str
    attack: str
    accuracy: float
    low: float
    high: float


@dataclass(frozen=True)
class Challenge:
    name: str  # the file's stem: the challenge's id
    kind: str
    title: str
    task: str
    dataset: str
    models: tuple[str, ...]  # shipped model file stems (assets/models)
    order: int = 100
    image: int = 0  # fool: the test image
    norm: str = "linf"  # fool: the budget's norm
    budget: float = 0.0  # fool: the default budget
    answer: Answer | None = None  # guess
    target: int = 0  # split: the class model A must read
    drawn: int | None = None  # split: the class the drawing should look like
    extra: dict = field(default_factory=dict)


def _text(data: dict, key: str, limit: int) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"needs text for {key}")
    if len(value.strip()) > limit:
        raise ValueError(f"{key} is {len(value.strip())} characters long; at most {limit} fit the board")
    return value.strip()


def _number(data: dict, key: str, *, low: float, high: float, default=None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{key} must lie in [{low:g}, {high:g}], not {value:g}")
    return float(value)


def _class(data: dict, key: str, num_classes: int) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < num_classes:
        raise ValueError(f"{key} must be a class from 0 to {num_classes - 1}, not {value!r}")
    return value


def parse_challenge(name: str, data: dict, *, shipped: dict[str, str] | None = None) -> Challenge:
    """One challenge from a file's table; ``shipped`` ({file stem: dataset}) is what ``models`` may name. Raises
    ValueError saying what is wrong."""
    from ..data import DATASETS, dataset_info

    kind = data.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    title, task = _text(data, "title", TITLE_MAX), _text(data, "task", TASK_MAX)
    dataset = data.get("dataset")
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, not {dataset!r}")
    info = dataset_info(dataset)
    models = data.get("models")
    wanted = {"fool": (1, 4), "guess": (1, 1), "split": (2, 2)}[kind]
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models) \
            or not wanted[0] <= len(models) <= wanted[1]:
        count = f"{wanted[0]}" if wanted[0] == wanted[1] else f"{wanted[0]} to {wanted[1]}"
        raise ValueError(f"models must list {count} shipped model names for a {kind} challenge")
    if len(set(models)) != len(models):
        raise ValueError("models names a model twice")
    if shipped is not None:
        for model in models:
            if model not in shipped:
                raise ValueError(f"no shipped model {model!r} (there are {', '.join(sorted(shipped))})")
            if shipped[model] != dataset:
                raise ValueError(f"{model} is a {shipped[model]} model, not a {dataset} one")
    order = data.get("order", 100)
    if isinstance(order, bool) or not isinstance(order, int):
        raise ValueError("order must be a whole number")
    common = dict(name=name, kind=kind, title=title, task=task, dataset=dataset, models=tuple(models), order=order)
    known = {"kind", "title", "task", "dataset", "models", "order"}
    if kind == "fool":
        known |= {"image", "norm", "budget"}
        image = data.get("image", 0)
        if isinstance(image, bool) or not isinstance(image, int) or not 0 <= image < TEST_IMAGES:
            raise ValueError(f"image must be a test image index from 0 to {TEST_IMAGES - 1}, not {image!r}")
        norm = data.get("norm", "linf")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {norm!r}")
        pixels = math.prod(info.shape)
        budget = _number(data, "budget", low=0.0, high=budget_limit(norm, pixels))
        if budget == 0:
            raise ValueError("budget must be above 0")
        challenge = Challenge(**common, image=image, norm=norm, budget=budget)
    elif kind == "guess":
        known |= {"answer"}
        answer = data.get("answer")
        if not isinstance(answer, dict):
            raise ValueError("a guess challenge needs an [answer] table")
        if answer.get("measure") not in MEASURES:
            raise ValueError(f"answer.measure must be one of {', '.join(MEASURES)}, not {answer.get('measure')!r}")
        from ..attacks import ATTACKS

        if answer.get("attack") not in ATTACKS:
            raise ValueError(f"answer.attack must be an attack of the registry, not {answer.get('attack')!r}")
        unknown = sorted(set(answer) - {"measure", "attack", "accuracy", "min", "max"})
        if unknown:
            raise ValueError(f"[answer] has no field {', '.join(unknown)}")
        accuracy = _number(answer, "accuracy", low=0.0, high=1.0)
        low = _number(answer, "min", low=0.0, high=1.0, default=0.0)
        high = _number(answer, "max", low=0.0, high=1.0, default=1.0)
        if not low < high:
            raise ValueError("answer.min must be below answer.max")
        challenge = Challenge(**common, answer=Answer(answer["measure"], answer["attack"], accuracy, low, high))
    else:
        known |= {"target", "drawn"}
        if info.shape != (1, 28, 28):
            raise ValueError(f"a split challenge is drawn on the 28x28 grey canvas: {dataset} images are not")
        target = _class(data, "target", info.num_classes)
        drawn = _class(data, "drawn", info.num_classes) if "drawn" in data else None
        if drawn == target:
            raise ValueError("drawn must differ from target: the point is a drawing of one class read as another")
        challenge = Challenge(**common, target=target, drawn=drawn)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"a {kind} challenge has no field {', '.join(unknown)}")
    return challenge


def _shipped_datasets() -> dict[str, str]:
    from ..shipped import shipped_models

    return {m.file.stem: m.meta.get("dataset") or m.meta.get("config", {}).get("dataset", "") for m in shipped_models()}


def read_challenges(directory: str | os.PathLike | None = None, *,
                    shipped: dict[str, str] | None = None) -> tuple[list[Challenge], list[str]]:
    """The challenges in ``directory`` (default ``assets/challenges``), by order then name, and one message per bad
    file; ``shipped`` ({model file stem: dataset}, default the shipped models) is what they may name."""
    if directory is None and shipped is None:  # read again only when a file it depends on changes (every page run asks)
        from ..lectures import _mtimes
        from ..shipped import SHIPPED_DIR

        found, errors = _default_challenges(_mtimes(CHALLENGES_DIR, "*.toml") + _mtimes(SHIPPED_DIR, "*.json"))
        return list(found), list(errors)
    directory = Path(directory) if directory is not None else CHALLENGES_DIR
    shipped = _shipped_datasets() if shipped is None else shipped
    found, errors = [], []
    for file in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
        try:
            found.append(parse_challenge(file.stem, tomllib.loads(file.read_text(encoding="utf-8")), shipped=shipped))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError, TypeError) as exc:
            errors.append(f"{file.name}: {exc}")
    return sorted(found, key=lambda c: (c.order, c.name)), errors


@lru_cache(maxsize=4)
def _default_challenges(_stamp: tuple) -> tuple[tuple[Challenge, ...], tuple[str, ...]]:
    found, errors = read_challenges(CHALLENGES_DIR)
    return tuple(found), tuple(errors)


__all__ = ["Answer", "CHALLENGES_DIR", "Challenge", "KINDS", "NORMS", "budget_limit", "parse_challenge",
           "read_challenges"]
