"""Lecture paths: prepared views of the lab, kept as data (``assets/lectures/*.toml``) so a lecturer can add one.

A path names a page and the query string that opens it in its prepared state, e.g.

    title = "ε collapse: standard vs adversarially trained"
    summary = "Drag ε: ..."
    page = "attack"
    order = 1
    [params]
    models = "b2b72c46c4b55fa5,2a34f7c1f4ac9e92"
    attack = "pgd"
    n = "1000"

Each page reads its own parameters from the URL (see ``PAGE_PARAMS``), so the same link works pasted into a
browser. A file that cannot be read or names an unknown page or parameter is reported, never fatal: the
other paths still show.

A summary quotes the shipped results it opens on through placeholders, filled when the file is read, so that a
retrained model cannot leave a card promising a number the page no longer shows:

    summary = "... keeps {mnist_cnn_fgsm_at:fgsm@0.3}% under FGSM at ε = 0.3 ..."

``{<shipped model file stem>:<attack>@<eps>}`` is that model's accuracy in percent, one decimal as the Attack page's
table writes it, from the shipped result (``assets/evaluations``) the page opens on: the comparison's parameters for
that attack, the path's ``n`` test images (1,000 without one), seed 0, at an ε the page measures. A placeholder whose
result is missing or was made for other weights makes the file a reported error, never a wrong number.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

LECTURES_DIR = Path(__file__).resolve().parents[1] / "assets" / "lectures"

# The query-string parameters each page restores its state from (a page's URL path -> parameter: meaning).
PAGE_PARAMS: dict[str, dict[str, str]] = {
    "attack": {"dataset": "dataset", "models": "comma-separated model ids", "attack": "attack name (pgd, fgsm, ...)",
               "n": "number of test images", "cmp": "model id of the attack comparison",
               "cmp_attacks": "comma-separated attacks of the comparison"},
    "classviz": {"dataset": "dataset", "models": "comma-separated model ids",
                 "start": "draw | test | uniform | gaussian | zeros", "index": "test image index",
                 "target": "target class"},
    "saliency": {"dataset": "dataset", "models": "comma-separated model ids", "index": "test image index"},
    "confidence": {"dataset": "dataset", "models": "comma-separated model ids", "inputs": "clean | adversarial"},
    "train": {"dataset": "dataset"},
    "models": {"dataset": "dataset"},
}
# Every page's layout parameters: what a lecture path opens on (drawn first, controls folded) and the projector.
LAYOUT_PARAMS = {"focus": "the section the path opens on (lab_pages._layout.FOCUS_VIEWS)",
                 "present": "1: projector layout"}
FOCUS_OF_PAGE = {"attack": ("curves", "comparison"), "classviz": ("morph",), "saliency": ("maps",),
                 "confidence": ("calibration",)}
for _page, _params in PAGE_PARAMS.items():
    _params.update(LAYOUT_PARAMS)


@dataclass(frozen=True)
class LecturePath:
    name: str  # the file's stem
    title: str
    summary: str
    page: str  # a key of PAGE_PARAMS
    params: dict[str, str] = field(default_factory=dict)
    order: int = 100
    icon: str = ":material/school:"


# The Attack page's slider positions over [0, its largest eps] (lab_pages/attack.py's FRAMES): the eps its curves show.
PAGE_FRAMES = 41
SHIPPED_SEED = 0  # the seed the pages open on and the shipped results were computed with
SHIPPED_IMAGES = 1000  # test images of the shipped results (robust_core.precomputed.N_IMAGES), for a path without n
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_FIELD = re.compile(r"(?P<model>[A-Za-z0-9_-]+):(?P<attack>[a-z0-9_]+)@(?P<eps>\d*\.?\d+)")


class ShippedResults:
    """Accuracies a lecture card may quote: the shipped models (``assets/models``) under their shipped attack results
    (``assets/evaluations``), each checked against the model's weights. Directories default to the shipped ones."""

    def __init__(self, models_dir: str | os.PathLike | None = None, evaluations_dir: str | os.PathLike | None = None):
        self.models_dir, self.evaluations_dir = models_dir, evaluations_dir

    def minimal_eps(self, model: str, attack: str, *, n: int):
        """Per test image (the first ``n``), the smallest ε at which ``attack`` (the comparison's parameters, seed 0)
        fools shipped model ``model`` (its file stem): a CPU tensor, 0 where the model is wrong without attack, inf
        where the search found none up to its largest ε. Raises ValueError saying what is missing."""
        from .attacks import ATTACKS
        from .evaluation import EvalKey, comparison_params

        models = _shipped(self.models_dir)
        if model not in models:
            raise ValueError(f"no shipped model {model!r} (there are {', '.join(sorted(models))})")
        if attack not in ATTACKS:
            raise ValueError(f"no attack {attack!r}")
        model_id, digest = models[model]
        key = EvalKey(model_id, attack, tuple(sorted(comparison_params(attack).items())), int(n), SHIPPED_SEED)
        found = _shipped_results(self.evaluations_dir).get(key.digest())
        if found is None:
            raise ValueError(f"no shipped {attack} result for {model} on {n} images "
                             "(python -m robust_core.precomputed build makes them)")
        if found[0] != digest:
            raise ValueError(f"the shipped {attack} result for {model} was made for other weights: rebuild it "
                             "(python -m robust_core.precomputed build)")
        return found[1]

    def accuracy(self, model: str, attack: str, eps: float, *, n: int) -> float:
        """Accuracy (a share) of shipped model ``model`` (its file stem, e.g. "mnist_cnn_fgsm_at") under ``attack`` at
        ``eps`` on the first ``n`` test images. Raises ValueError saying what is missing."""
        from .evaluation import accuracy_at, comparison_params, measured_eps_grid

        min_eps = self.minimal_eps(model, attack, n=n)
        params = comparison_params(attack)
        frames = [round(params["eps_max"] * k / (PAGE_FRAMES - 1), 6) for k in range(PAGE_FRAMES)]
        if not any(abs(eps - e) < 1e-9 for e in measured_eps_grid(params, frames)):
            raise ValueError(f"ε = {eps:g} is not an ε the Attack page measures {attack} at")
        return float(accuracy_at(min_eps, [eps])[0])

    def fill(self, text: str, *, n: int) -> str:
        """``text`` with every ``{model:attack@eps}`` replaced by that accuracy in percent (one decimal)."""
        def number(match: re.Match) -> str:
            field = _FIELD.fullmatch(match.group(1).strip())
            if field is None:
                raise ValueError(f"{match.group(0)} is not a placeholder {{model:attack@eps}} "
                                 "(e.g. {mnist_cnn_fgsm_at:fgsm@0.3})")
            try:
                value = self.accuracy(field["model"], field["attack"], float(field["eps"]), n=n)
            except ValueError as exc:
                raise ValueError(f"{match.group(0)}: {exc}") from None
            return f"{100 * value:.1f}"
        return PLACEHOLDER.sub(number, text)


def _mtimes(directory: Path, pattern: str) -> tuple:
    return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in sorted(directory.glob(pattern))) \
        if directory.is_dir() else ()


def shipped_weights(models_dir=None) -> dict[str, tuple[str, str]]:
    """{shipped model file stem: (its store id, the digest of its weights)}, read again only when the files change."""
    return _shipped(models_dir)


def _shipped(models_dir) -> dict[str, tuple[str, str]]:
    from .shipped import SHIPPED_DIR

    directory = Path(models_dir) if models_dir is not None else SHIPPED_DIR
    return _shipped_cached(directory, _mtimes(directory, "*.safetensors") + _mtimes(directory, "*.json"))


@lru_cache(maxsize=4)
def _shipped_cached(directory: Path, _stamp: tuple) -> dict[str, tuple[str, str]]:
    """{file stem: (model id, digest of its weights)}: the digest robust_core.precomputed records with a result."""
    from safetensors.torch import load_file

    from .precomputed import weights_digest
    from .shipped import shipped_models

    class _Weights:  # weights_digest reads a network's state_dict(): the file's tensors are that state
        def __init__(self, state):
            self.state = state

        def state_dict(self):
            return self.state

    out = {}
    for shipped in shipped_models(directory):
        try:
            out[shipped.file.stem] = (shipped.model_id, weights_digest(_Weights(load_file(str(shipped.file)))))
        except (OSError, ValueError, RuntimeError, KeyError):
            continue  # a damaged shipped file: its placeholders report "no shipped model"
    return out


def _shipped_results(evaluations_dir) -> dict:
    from .precomputed import PRECOMPUTED_DIR

    directory = Path(evaluations_dir) if evaluations_dir is not None else PRECOMPUTED_DIR
    return _shipped_results_cached(directory, _mtimes(directory, "*.json"))


@lru_cache(maxsize=4)
def _shipped_results_cached(directory: Path, _stamp: tuple) -> dict:
    """{digest of the key the current code computes: (weights digest, minimal eps)} of the readable shipped results.
    A file named for another digest was made by another version of the search (robust_core.precomputed): left out."""
    from .precomputed import precomputed_results

    items, _ = precomputed_results(directory)
    return {item.path.stem: (item.payload["weights_sha256"], item.values()) for item in items
            if item.path.stem == item.key.digest()}


def lecture_paths(directory: str | os.PathLike | None = None, *,
                  results: ShippedResults | None = None) -> tuple[list[LecturePath], list[str]]:
    """The lecture paths in ``directory`` (default ``assets/lectures``), by order then name, and one message per bad
    file. Summaries' placeholders are filled from ``results`` (default: the shipped models and results)."""
    directory = Path(directory) if directory is not None else LECTURES_DIR
    if results is None:  # read once per change of the files it depends on: the home page asks at every run
        from .precomputed import PRECOMPUTED_DIR
        from .shipped import SHIPPED_DIR

        stamp = (_mtimes(directory, "*.toml"), _mtimes(SHIPPED_DIR, "*.safetensors"), _mtimes(SHIPPED_DIR, "*.json"),
                 _mtimes(PRECOMPUTED_DIR, "*.json"))
        paths, errors = _default_lecture_paths(directory, stamp)
        return list(paths), list(errors)
    return _read_lecture_paths(directory, results)


@lru_cache(maxsize=4)
def _default_lecture_paths(directory: Path, _stamp: tuple) -> tuple[tuple[LecturePath, ...], tuple[str, ...]]:
    paths, errors = _read_lecture_paths(directory, ShippedResults())
    return tuple(paths), tuple(errors)


def _read_lecture_paths(directory: Path, results: ShippedResults) -> tuple[list[LecturePath], list[str]]:
    paths, errors = [], []
    for file in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
            path = _parse(file.stem, data, results)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError, TypeError) as exc:
            errors.append(f"{file.name}: {exc}")
            continue
        paths.append(path)
    return sorted(paths, key=lambda p: (p.order, p.name)), errors


def _parse(name: str, data: dict, results: ShippedResults) -> LecturePath:
    missing = [k for k in ("title", "summary", "page") if not isinstance(data.get(k), str) or not data[k].strip()]
    if missing:
        raise ValueError(f"needs text for {', '.join(missing)}")
    page = data["page"]
    if page not in PAGE_PARAMS:
        raise ValueError(f"page must be one of {sorted(PAGE_PARAMS)}, not {page!r}")
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise ValueError("[params] must be a table")
    unknown = sorted(set(params) - set(PAGE_PARAMS[page]))
    if unknown:
        raise ValueError(f"the {page} page has no parameter {', '.join(unknown)} "
                         f"(it reads {', '.join(PAGE_PARAMS[page])})")
    if "focus" in params and params["focus"] not in FOCUS_OF_PAGE.get(page, ()):
        raise ValueError(f"the {page} page opens on none of focus = {params['focus']!r} "
                         f"(it can: {', '.join(FOCUS_OF_PAGE.get(page, ())) or 'nothing'})")
    order = data.get("order", 100)
    if not isinstance(order, int):
        raise ValueError("order must be a whole number")
    try:
        n = int(params.get("n", SHIPPED_IMAGES))
    except (TypeError, ValueError):
        raise ValueError(f"n must be a whole number, not {params['n']!r}") from None
    summary = results.fill(data["summary"].strip(), n=n)
    return LecturePath(name=name, title=data["title"].strip(), summary=summary, page=page,
                       params={k: str(v) for k, v in params.items()}, order=order,
                       icon=str(data.get("icon", ":material/school:")))


__all__ = ["FOCUS_OF_PAGE", "LECTURES_DIR", "LAYOUT_PARAMS", "LecturePath", "PAGE_PARAMS", "PLACEHOLDER",
           "ShippedResults", "lecture_paths", "shipped_weights"]
