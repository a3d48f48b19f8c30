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
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

LECTURES_DIR = Path(__file__).resolve().parents[1] / "assets" / "lectures"

# The query-string parameters each page restores its state from (a page's URL path -> parameter: meaning).
PAGE_PARAMS: dict[str, dict[str, str]] = {
    "attack": {"dataset": "dataset", "models": "comma-separated model ids", "attack": "attack name (pgd, fgsm, ...)",
               "n": "number of test images", "cmp": "model id of the attack comparison",
               "cmp_attacks": "comma-separated attacks of the comparison"},
    "classviz": {"dataset": "dataset", "models": "comma-separated model ids", "start": "draw | test | uniform | gaussian | zeros",
                 "index": "test image index", "target": "target class"},
    "saliency": {"dataset": "dataset", "models": "comma-separated model ids", "index": "test image index"},
    "confidence": {"dataset": "dataset", "models": "comma-separated model ids", "inputs": "clean | adversarial"},
    "train": {"dataset": "dataset"},
    "models": {"dataset": "dataset"},
}


@dataclass(frozen=True)
class LecturePath:
    name: str  # the file's stem
    title: str
    summary: str
    page: str  # a key of PAGE_PARAMS
    params: dict[str, str] = field(default_factory=dict)
    order: int = 100
    icon: str = ":material/school:"


def lecture_paths(directory: str | os.PathLike | None = None) -> tuple[list[LecturePath], list[str]]:
    """The lecture paths in ``directory`` (default ``assets/lectures``), by order then name, and one message per bad file."""
    directory = Path(directory) if directory is not None else LECTURES_DIR
    paths, errors = [], []
    for file in sorted(directory.glob("*.toml")) if directory.is_dir() else []:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
            path = _parse(file.stem, data)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError, TypeError) as exc:
            errors.append(f"{file.name}: {exc}")
            continue
        paths.append(path)
    return sorted(paths, key=lambda p: (p.order, p.name)), errors


def _parse(name: str, data: dict) -> LecturePath:
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
        raise ValueError(f"the {page} page has no parameter {', '.join(unknown)} (it reads {', '.join(PAGE_PARAMS[page])})")
    order = data.get("order", 100)
    if not isinstance(order, int):
        raise ValueError("order must be a whole number")
    return LecturePath(name=name, title=data["title"].strip(), summary=data["summary"].strip(), page=page,
                       params={k: str(v) for k, v in params.items()}, order=order,
                       icon=str(data.get("icon", ":material/school:")))


__all__ = ["LECTURES_DIR", "LecturePath", "PAGE_PARAMS", "lecture_paths"]
