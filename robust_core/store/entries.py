"""What the store's entries are and where they live: the store folder, one model's entry (id, folder, metadata), and
the names the pages show for entries."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import user_cache_dir
from ..names import clean_name, name_key
from ..training import TrainConfig

STORE_DIR_ENV = "ROBUST_STORE_DIR"
FORMAT_VERSION = 1


def default_store_dir() -> Path:
    return user_cache_dir() / "models"


def library_versions() -> dict[str, str]:
    import numpy
    import safetensors

    from .. import __version__

    return {"robust_core": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


def resolve_store_dir(root: str | os.PathLike | None = None) -> Path:
    """The store folder: ``root`` if given, else ``$ROBUST_STORE_DIR``, else the user's cache folder."""
    if root is None:
        root = os.environ.get(STORE_DIR_ENV) or default_store_dir()
    return Path(root).expanduser()


@dataclass(frozen=True)
class StoredModel:
    """One entry of the store: its id, its folder and its metadata."""

    model_id: str
    path: Path
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        return self.meta.get("name", self.model_id)

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.meta["config"])


def default_name(config: TrainConfig, model_id: str) -> str:
    """A readable name for a model nobody named: "k-NN (k=3) · MNIST" for a fitted baseline (one per dataset and
    recipe in practice), "Seed CNN · PGD adversarial training · 2a34f7" for a network (the id's start tells
    apart the many configurations a room trains)."""
    from ..data import DATASETS
    from ..models import ARCHITECTURES
    from ..training import METHOD_TITLES

    arch = ARCHITECTURES[config.arch].title if config.arch in ARCHITECTURES else config.arch
    if config.arch in ARCHITECTURES and ARCHITECTURES[config.arch].kind == "fitted":
        return f"{arch} · {DATASETS[config.dataset].title if config.dataset in DATASETS else config.dataset}"
    return f"{arch} · {METHOD_TITLES.get(config.method, config.method)} · {model_id[:6]}"


def display_names(entries: list[StoredModel], *, mark_students: bool = False) -> dict[str, str]:
    """Each entry's label for a picker: its name, with ``[id prefix]`` appended where names read alike, and with
    ``mark_students`` (lecture mode) "(student) " before the name of a model a visitor trained
    (:func:`robust_core.access.trained_by_visitor`), so that it never passes for the lecturer's or a shipped one:
    before, not after, because a picker cuts a long label's end (a name padded to the picker's width hid the mark).

    Names are unique within a dataset (up to case, spacing and look-alike letters), but a list can still hold names
    that read alike: models of different datasets, or stores written before names were unique. Labels must differ:
    besides misleading the user, Streamlit identifies a selectbox's choice by its label, so two equal labels make a
    pick resolve to the wrong model. Prefixes start at 8 hex digits and grow until the labels differ.
    """
    from ..access import trained_by_visitor

    groups: dict[str, list[StoredModel]] = {}
    for entry in entries:
        groups.setdefault(name_key(entry.name), []).append(entry)
    labels = {}
    for group in groups.values():
        if len(group) == 1:
            labels[group[0].model_id] = clean_name(group[0].name)
            continue
        width = 8
        while width < max(len(e.model_id) for e in group) and len({e.model_id[:width] for e in group}) < len(group):
            width += 2
        for entry in group:
            labels[entry.model_id] = f"{clean_name(entry.name)} [{entry.model_id[:width]}]"
    if mark_students:
        for entry in entries:
            if trained_by_visitor(entry.meta):
                labels[entry.model_id] = "(student) " + labels[entry.model_id]
        # A lecturer's model named "(student) x" and a visitor's named "x" would now share a label.
        seen: dict[str, int] = {}
        for label in labels.values():
            seen[label] = seen.get(label, 0) + 1
        for model_id, label in labels.items():
            if seen[label] > 1:
                labels[model_id] = f"{label} [{model_id}]"
    return labels


def json_default(value):
    """JSON for what metadata may hold besides JSON's own types: tuples and sets as lists, tensors as lists."""
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)
