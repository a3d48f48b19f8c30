"""The model store: trained models on disk, keyed by the hash of their training configuration.

Layout (RobustBench-like deterministic paths)::

    $ROBUST_STORE_DIR/            default ~/.cache/robustness-lab/models
        <dataset>/<model_id>/
            weights.safetensors   tensors only: loading a file never runs code (no pickle)
            meta.json             config, metrics, curves, versions, wall time, creation time

A model directory is written whole in a temporary folder and renamed into place, so a crash
mid-save leaves either the old state or the new one, never a half model. ``meta.json`` edits
(renames) go through a temporary file and ``os.replace`` for the same reason.

An exported model is one ``.safetensors`` file whose header metadata carries ``meta.json``.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from .data import DATASETS, user_cache_dir
from .models import architecture, build_model, parameter_count
from .training import ProgressEvent, TrainConfig, TrainResult, train_model

STORE_DIR_ENV = "ROBUST_STORE_DIR"
FORMAT_VERSION = 1
# Key of the JSON metadata inside an exported safetensors header.
EXPORT_META_KEY = "robustness_lab.meta"
# Trained networks kept in memory: small models (a few MB each), reused by every page.
MEMORY_CACHE_SIZE = 16


class StoreError(Exception):
    """A store operation could not be done; the message says why and nothing was changed."""


class InvalidCheckpointError(StoreError):
    """A file is not a Robustness Lab checkpoint, or it is corrupted."""


def default_store_dir() -> Path:
    return user_cache_dir() / "models"


def library_versions() -> dict[str, str]:
    import numpy
    import safetensors

    from . import __version__

    return {"robust_core": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


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
    from .data import DATASETS
    from .models import ARCHITECTURES
    from .training import METHOD_TITLES

    arch = ARCHITECTURES[config.arch].title if config.arch in ARCHITECTURES else config.arch
    if config.arch in ARCHITECTURES and ARCHITECTURES[config.arch].kind == "fitted":
        return f"{arch} · {DATASETS[config.dataset].title if config.dataset in DATASETS else config.dataset}"
    return f"{arch} · {METHOD_TITLES.get(config.method, config.method)} · {model_id[:6]}"


def name_key(name: str) -> str:
    """What makes two model names the same: "CNN  · Standard " and "cnn · standard" read alike in a picker."""
    return " ".join(name.split()).casefold()


def display_names(entries: list[StoredModel]) -> dict[str, str]:
    """Each entry's label for a picker: its name, with ``[id prefix]`` appended where names collide.

    Names are unique within a dataset, but a list can still hold equal names: models of different
    datasets, or stores written before names were unique. Labels must differ: besides misleading
    the user, Streamlit identifies a selectbox's choice by its label, so two equal labels make a
    pick resolve to the wrong model. Prefixes start at 8 hex digits and grow until the labels differ.
    """
    groups: dict[str, list[StoredModel]] = {}
    for entry in entries:
        groups.setdefault(name_key(entry.name), []).append(entry)
    labels = {}
    for group in groups.values():
        if len(group) == 1:
            labels[group[0].model_id] = group[0].name.strip()
            continue
        width = 8
        while width < max(len(e.model_id) for e in group) and len({e.model_id[:width] for e in group}) < len(group):
            width += 2
        for entry in group:
            labels[entry.model_id] = f"{entry.name.strip()} [{entry.model_id[:width]}]"
    return labels


def resolve_store_dir(root: str | os.PathLike | None = None) -> Path:
    """The store folder: ``root`` if given, else ``$ROBUST_STORE_DIR``, else the user's cache folder."""
    if root is None:
        root = os.environ.get(STORE_DIR_ENV) or default_store_dir()
    return Path(root).expanduser()


class ModelStore:
    """Trained models cached on disk and in memory. Thread-safe for one process."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_store_dir(root)
        self._memory: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.RLock()
        self._metas: dict[Path, tuple[tuple[int, int, int], dict]] = {}  # meta.json path -> (its stat, parsed)

    def _read_meta(self, meta_path: Path) -> dict:
        """``meta.json`` parsed, from memory while the file is unchanged (same inode, size and mtime: every edit
        replaces the file atomically). Pages list the store at every run of every visitor; parsing each model's
        metadata (training curves included) each time was a visible share of a busy server's CPU. The dict is
        shared: treat it as read-only."""
        stat = meta_path.stat()
        signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cached = self._metas.get(meta_path)
        if cached is not None and cached[0] == signature:
            return cached[1]
        meta = json.loads(meta_path.read_text())
        self._metas[meta_path] = (signature, meta)
        return meta

    # ---- paths and listing -------------------------------------------------------------
    def _dir(self, dataset: str, model_id: str) -> Path:
        return self.root / dataset / model_id

    def _find(self, model_id: str) -> Path | None:
        if not self.root.exists():
            return None
        for dataset_dir in self.root.iterdir():
            candidate = dataset_dir / model_id
            if (candidate / "meta.json").is_file() and (candidate / "weights.safetensors").is_file():
                return candidate
        return None

    def __contains__(self, model_id: str) -> bool:
        return self._find(model_id) is not None

    def list(self, dataset: str | None = None) -> list[StoredModel]:
        """Stored models, newest first. Folders that are not complete models are skipped."""
        if not self.root.exists():
            return []
        entries = []
        for dataset_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if dataset is not None and dataset_dir.name != dataset:
                continue
            for model_dir in dataset_dir.iterdir():
                meta_path = model_dir / "meta.json"
                if model_dir.name.startswith(".") or not meta_path.is_file() or not (model_dir / "weights.safetensors").is_file():
                    continue
                try:
                    meta = self._read_meta(meta_path)
                except (OSError, json.JSONDecodeError):
                    continue  # an unreadable entry must not hide the others
                entries.append(StoredModel(model_dir.name, model_dir, meta))
        return sorted(entries, key=lambda e: e.meta.get("created", ""), reverse=True)

    def get(self, model_id: str) -> StoredModel:
        path = self._find(model_id)
        if path is None:
            raise KeyError(f"No model {model_id!r} in the store at {self.root}")
        return StoredModel(model_id, path, self._read_meta(path / "meta.json"))

    def resolve(self, text: str) -> str:
        """The id of the one stored model whose id starts with ``text`` (ids are 16 hex digits; a prefix
        is enough on a command line). ValueError if none or several match."""
        matches = [e.model_id for e in self.list() if e.model_id.startswith(text)]
        if not matches:
            raise ValueError(f"no stored model id starts with {text!r} in {self.root}")
        if len(matches) > 1:
            raise ValueError(f"{text!r} matches {len(matches)} stored models; give more of the id")
        return matches[0]

    # ---- saving and loading ------------------------------------------------------------
    def save(self, result: TrainResult, *, name: str | None = None, extra_meta: dict[str, Any] | None = None) -> StoredModel:
        """Save a training result under its config hash; an existing entry is kept as it is."""
        config = result.config
        model_id = config.config_hash()
        meta = {
            "format_version": FORMAT_VERSION,
            "id": model_id,
            "name": name or default_name(config, model_id),
            "config": config.to_dict(),
            "metrics": result.metrics,
            "history": result.history,
            "parameters": parameter_count(result.model),
            "wall_time_s": result.wall_time_s,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": library_versions(),
            **(extra_meta or {}),
        }
        return self._write_new(model_id, config.dataset, _state_dict(result.model), meta, model=result.model)

    def _write_new(self, model_id: str, dataset: str, state: dict[str, torch.Tensor], meta: dict, model=None) -> StoredModel:
        with self._lock:
            existing = self._find(model_id)
            if existing is not None:
                return self.get(model_id)
            # A new model never takes a name the dataset already uses (a typed name, or an import's).
            meta = {**meta, "name": self.free_name(dataset, meta.get("name") or model_id)}
            final = self._dir(dataset, model_id)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{model_id}-", dir=final.parent))
            try:
                (tmp / "weights.safetensors").write_bytes(save_safetensors_bytes(state))
                (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=_json_default))
                os.rename(tmp, final)  # atomic on one file system: readers see all or nothing
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            if model is not None:
                self._remember(model_id, model)
            return StoredModel(model_id, final, meta)

    def load(self, model_id: str, *, device: torch.device | str | None = None):
        """The model ``model_id`` in eval mode (from memory when already loaded)."""
        with self._lock:
            model = self._memory.get(model_id)
            if model is None:
                entry = self.get(model_id)
                try:
                    state = load_safetensors_bytes((entry.path / "weights.safetensors").read_bytes())
                except (SafetensorError, OSError, ValueError) as exc:
                    raise InvalidCheckpointError(f"The weights of model {model_id} are unreadable: {exc}") from exc
                model = _model_from_state(entry.meta, state)
                self._remember(model_id, model)
            else:
                self._memory.move_to_end(model_id)
        if device is not None and isinstance(model, nn.Module):
            model = model.to(device)
        if isinstance(model, nn.Module):
            model.eval()
        return model

    def _remember(self, model_id: str, model) -> None:
        self._memory[model_id] = model
        self._memory.move_to_end(model_id)
        while len(self._memory) > MEMORY_CACHE_SIZE:
            self._memory.popitem(last=False)

    def train_or_load(
        self,
        config: TrainConfig,
        *,
        name: str | None = None,
        device: torch.device | str | None = None,
        on_progress: Callable[[ProgressEvent], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        data=None,
        extra_meta: dict[str, Any] | None = None,
    ) -> tuple[Any, StoredModel, bool]:
        """(model, entry, was_cached): the stored model for ``config``, training it only if absent."""
        model_id = config.config_hash()
        if model_id in self:
            return self.load(model_id, device=device), self.get(model_id), True
        result = train_model(config, data=data, device=device, on_progress=on_progress, should_stop=should_stop)
        return result.model, self.save(result, name=name, extra_meta=extra_meta), False

    def training_job(self, config: TrainConfig, *, name: str | None = None, data=None,
                     extra_meta: dict[str, Any] | None = None) -> Callable[[Any], StoredModel]:
        """``train_or_load`` as a job for :class:`robust_core.jobs.JobRunner`: ``fn(ctx) -> StoredModel``.

        While it trains, ``ctx.job.details`` holds ``live`` (the curves so far: per-batch (epoch position, loss,
        accuracy) and per-epoch validation loss/accuracy, for a live chart) and ``last`` (the last progress event's
        numbers). ``ctx.progress`` raises ``JobCancelled`` once nobody wants the model: training stops between two
        batches and nothing is saved.
        """
        def run(ctx) -> StoredModel:
            live = ctx.job.details.setdefault("live", {"batches": [], "epoch": [], "val_loss": [], "val_acc": []})

            def on_progress(event: ProgressEvent) -> None:
                last = {"epoch": event.epoch, "epochs": event.epochs, "batch": event.batch,
                        "batches": event.batches_per_epoch, "loss": event.train_loss, "acc": event.train_acc,
                        "elapsed_s": event.elapsed_s, "eta_s": event.eta_s}
                if event.kind == "batch":
                    live["batches"].append(((event.epoch - 1) + event.batch / event.batches_per_epoch, event.train_loss,
                                            event.train_acc))
                else:  # "epoch": the validation numbers
                    live["epoch"].append(event.epoch)
                    live["val_loss"].append(event.val_loss)
                    live["val_acc"].append(event.val_acc)
                ctx.job.details["last"] = last
                ctx.progress(min(event.fraction, 1.0))

            return self.train_or_load(config, name=name, data=data, on_progress=on_progress, extra_meta=extra_meta)[1]

        return run

    # ---- names --------------------------------------------------------------------------
    def name_owner(self, dataset: str, name: str, *, exclude: str | None = None) -> StoredModel | None:
        """The model of ``dataset`` (other than ``exclude``) whose name reads as ``name``, if any."""
        key = name_key(name)
        return next((e for e in self.list(dataset) if e.model_id != exclude and name_key(e.name) == key), None)

    def free_name(self, dataset: str, name: str, *, exclude: str | None = None) -> str:
        """``name`` if no other model of ``dataset`` has it, else the first free "name (2)", "name (3)", …"""
        name = name.strip()
        taken = {name_key(e.name) for e in self.list(dataset) if e.model_id != exclude}
        candidate, n = name, 1
        while name_key(candidate) in taken:
            n += 1
            candidate = f"{name} ({n})"
        return candidate

    # ---- editing ------------------------------------------------------------------------
    def rename(self, model_id: str, new_name: str) -> StoredModel:
        """Give ``model_id`` a new name; StoreError if another model of its dataset has that name
        (compared ignoring case and spacing), since pickers and confirmations show names."""
        new_name = " ".join(new_name.split())
        if not new_name:
            raise StoreError("A model name cannot be empty.")
        if len(new_name) > 120:
            raise StoreError("A model name is at most 120 characters.")
        with self._lock:
            entry = self.get(model_id)
            dataset = entry.path.parent.name
            owner = self.name_owner(dataset, new_name, exclude=model_id)
            if owner is not None:
                title = DATASETS[dataset].title if dataset in DATASETS else dataset
                raise StoreError(f"Another {title} model is already named “{owner.name}” (id {owner.model_id}). "
                                 "Choose a different name.")
            meta = {**entry.meta, "name": new_name}
            _atomic_write_text(entry.path / "meta.json", json.dumps(meta, indent=2, default=_json_default))
            return StoredModel(model_id, entry.path, meta)

    def delete(self, model_id: str) -> None:
        with self._lock:
            entry = self.get(model_id)
            # Rename first so the entry vanishes atomically even if removing the files fails half-way.
            trash = entry.path.parent / f".deleted-{model_id}-{time.time_ns()}"
            os.rename(entry.path, trash)
            shutil.rmtree(trash, ignore_errors=True)
            self._memory.pop(model_id, None)

    # ---- import / export ------------------------------------------------------------------
    def export_bytes(self, model_id: str) -> bytes:
        """One self-describing ``.safetensors`` file: weights plus the metadata in its header."""
        entry = self.get(model_id)
        state = load_safetensors_bytes((entry.path / "weights.safetensors").read_bytes())
        return save_safetensors_bytes(state, metadata={EXPORT_META_KEY: json.dumps(entry.meta, default=_json_default)})

    def export_file(self, model_id: str, path: str | os.PathLike) -> Path:
        """Write the export to ``path`` (.safetensors) and a readable copy of its metadata beside it (.json)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.export_bytes(model_id))
        meta = {k: v for k, v in self.get(model_id).meta.items() if k != "history"}
        _atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, default=_json_default) + "\n")
        return path

    def import_bytes(self, payload: bytes) -> tuple[StoredModel, bool]:
        """Add an exported model to the store. Returns (entry, was_new).

        Raises :class:`InvalidCheckpointError` for anything that is not a complete, loadable
        Robustness Lab checkpoint; the store is unchanged in that case.
        """
        meta, state = read_checkpoint(payload)
        model_id = meta["id"]
        if model_id in self:
            return self.get(model_id), False
        config = TrainConfig.from_dict(meta["config"])
        meta = {**meta, "imported": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        return self._write_new(model_id, config.dataset, state, meta), True


def read_checkpoint(payload: bytes) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Parse and fully validate an exported checkpoint: (metadata, tensors)."""
    if not payload:
        raise InvalidCheckpointError("The file is empty.")
    try:
        state = load_safetensors_bytes(payload)
        header_len = int.from_bytes(payload[:8], "little")
        header = json.loads(payload[8 : 8 + header_len])
    except Exception as exc:  # safetensors raises several types for garbage input
        raise InvalidCheckpointError(
            f"This is not a safetensors file (or it is corrupted): {exc}. "
            "Upload a .safetensors file exported from Robustness Lab's Models page."
        ) from exc
    raw_meta = (header.get("__metadata__") or {}).get(EXPORT_META_KEY)
    if raw_meta is None:
        raise InvalidCheckpointError(
            "This safetensors file has no Robustness Lab metadata: it was not exported from Robustness Lab, "
            "so its architecture and training configuration are unknown."
        )
    try:
        meta = json.loads(raw_meta)
        config = TrainConfig.from_dict(meta["config"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidCheckpointError(f"The checkpoint's metadata is invalid: {exc}") from exc
    if meta.get("id") != config.config_hash():
        raise InvalidCheckpointError("The checkpoint's id does not match its training configuration (edited or corrupted metadata).")
    try:
        _model_from_state(meta, state)
    except InvalidCheckpointError:
        raise
    except Exception as exc:
        raise InvalidCheckpointError(f"The weights do not fit architecture {config.arch!r}: {exc}") from exc
    return meta, state


def _state_dict(model) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous CPU tensors that share no memory.
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def _model_from_state(meta: dict[str, Any], state: dict[str, torch.Tensor]):
    config = TrainConfig.from_dict(meta["config"])
    arch_kwargs = dict(config.arch_kwargs)
    if architecture(config.arch).kind == "fitted":
        model = build_model(config.arch, config.dataset, **{**arch_kwargs, "seed": config.seed})
        model.load_state_dict(state)
        if config.arch == "knn":  # a k-NN memorises its training split: refit from the dataset
            from .data import load_dataset

            data = load_dataset(config.dataset)
            x, y = data.train_x, data.train_y
            if config.train_subset is not None:
                x, y = x[: config.train_subset], y[: config.train_subset]
            model.fit(x, y)
        return model
    if config.dropout:
        arch_kwargs["dropout"] = config.dropout
    model = build_model(config.arch, config.dataset, **arch_kwargs)
    model.load_state_dict(state, strict=True)
    for name, tensor in model.state_dict().items():
        if not torch.isfinite(tensor).all():
            raise InvalidCheckpointError(f"Tensor {name!r} holds NaN or infinite values.")
    return model.eval()


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(value):
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)
