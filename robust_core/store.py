"""The model store: trained models on disk, keyed by the hash of their training configuration.

Layout (RobustBench-like deterministic paths)::

    $ROBUST_STORE_DIR/            default ~/.cache/robustness-lab/models
        <dataset>/<model_id>/
            weights.safetensors   tensors only: loading a file never runs code (no pickle)
            meta.json             config, metrics, curves, versions, wall time, creation time

A model directory is written whole in a temporary folder and renamed into place, so a crash
mid-save leaves either the old state or the new one, never a half model. ``meta.json`` edits
(renames) go through a temporary file and ``os.replace`` for the same reason.

Several processes may share one store (dashboard replicas, on one host or on several with the store on NFSv4): saves,
renames, deletes and imports hold the store's file lock (:class:`robust_core.file_locks.FolderLock`, ``<store>/.lock``)
as well as the process's own lock, so a name checked free is still free when it is written, and listings read the
folders again at every call (an entry another process saved is listed at once; one it changed is parsed again).
Identical trainings asked for by two processes run once (:func:`robust_core.file_locks.compute_once`).

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
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from .checkpoints import (
    EXPORT_META_KEY,
    InvalidCheckpointError,
    StoreError,
    model_from_state,
    read_checkpoint,
    state_dict_of,
)
from .data import DATASETS, user_cache_dir
from .file_locks import FolderLock, atomic_write_text, compute_once, write_synced
from .models import parameter_count
from .names import clean_name, name_key, name_keys, names_look_alike
from .store_checks import (
    DamagedEntry,
    check_entry,
    remove_stale_temporaries,
    stat_signature,
)
from .training import ProgressEvent, TrainConfig, TrainResult, train_model

STORE_DIR_ENV = "ROBUST_STORE_DIR"
FORMAT_VERSION = 1
# Trained networks kept in memory: small models (a few MB each), reused by every page.
MEMORY_CACHE_SIZE = 16
# How often listing the store also removes what killed saves left behind (opening the store does it too).
SWEEP_INTERVAL_S = 600


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
    from .access import trained_by_visitor

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


TRAINING_REQUESTS = "requests"  # key of a training job's ``details``: requester -> (name, extra_meta)


def record_training_request(job, owner: str, *, name: str | None = None,
                            extra_meta: dict[str, Any] | None = None) -> None:
    """Record what ``owner``, a requester of the training ``job`` (made by :meth:`ModelStore.training_job`, or joined
    under its key), asked for: the model's ``name`` and ``extra_meta`` (its ``owner``...), used if ``owner`` is the
    first requester still waiting for the model when it is saved."""
    job.details.setdefault(TRAINING_REQUESTS, {})[owner] = (name, dict(extra_meta or {}))


def _remaining_request(job, name: str | None,
                       extra_meta: dict[str, Any] | None) -> tuple[str | None, dict[str, Any] | None]:
    """The (name, extra_meta) to save a shared training with: the first remaining requester's recorded request; when
    requests were recorded but none by a remaining requester, the default name and no owner (nothing of those who
    withdrew); without recorded requests, the job's own ``name`` and ``extra_meta``."""
    requests = job.details.get(TRAINING_REQUESTS)
    if not requests:
        return name, extra_meta
    remaining = next((requests[o] for o in list(job.owners) if o in requests), None)
    return remaining if remaining is not None else (None, None)


def resolve_store_dir(root: str | os.PathLike | None = None) -> Path:
    """The store folder: ``root`` if given, else ``$ROBUST_STORE_DIR``, else the user's cache folder."""
    if root is None:
        root = os.environ.get(STORE_DIR_ENV) or default_store_dir()
    return Path(root).expanduser()


class ModelStore:
    """Trained models cached on disk and in memory. Thread-safe, and safe for processes sharing the folder (see the
    module's docstring)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = resolve_store_dir(root)
        self._memory: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.RLock()  # this process's in-memory state
        self._shared_lock = FolderLock(self.root)  # every process's writes; always taken before ``_lock``
        self._memory_signature: dict[str, tuple] = {}  # model id -> its files' signatures when it was loaded
        # Each entry folder -> (the signatures of its two files, the entry or why it is damaged), and the folders whose
        # weights failed to load, with the signatures they had then.
        self._checked: dict[Path, tuple[tuple, StoredModel | DamagedEntry]] = {}
        self._unloadable: dict[Path, tuple[tuple, str]] = {}
        self._swept = time.monotonic()
        remove_stale_temporaries(self.root)
        self.reuse_listing_s = 0.0  # see _scan
        self._generation = 0
        self._listings: dict[str | None, tuple] = {}

    def _entry(self, model_dir: Path) -> StoredModel | DamagedEntry:
        """The folder ``model_dir`` as a model, or as a damaged entry saying why not, checked again only once one of its
        files changed (same inode, size and mtime: every edit replaces a file atomically). Pages list the store at every
        run of every visitor; parsing each model's metadata (training curves included) each time was a visible share
        of a busy server's CPU. An entry's metadata dict is shared: treat it as read-only."""
        signature = (stat_signature(model_dir / "meta.json"), stat_signature(model_dir / "weights.safetensors"))
        cached = self._checked.get(model_dir)
        if cached is not None and cached[0] == signature:
            return cached[1]
        meta, problem = check_entry(model_dir)
        failure = self._unloadable.get(model_dir)
        if problem is None and failure is not None and failure[0] == signature:
            problem = failure[1]
        if problem is None:
            entry: StoredModel | DamagedEntry = StoredModel(model_dir.name, model_dir, meta)
        else:
            name = meta.get("name") if isinstance(meta, dict) and isinstance(meta.get("name"), str) else None
            entry = DamagedEntry(model_dir.parent.name, model_dir.name, model_dir, problem, name)
        self._checked[model_dir] = (signature, entry)
        return entry

    def _scan(self, dataset: str | None) -> tuple[list[StoredModel], list[DamagedEntry]]:
        """(the models, newest first; the damaged entries) of ``dataset``, or of every dataset.

        With ``reuse_listing_s`` > 0 (the dashboard's shared store), a listing is reused for that long while no
        entry was added, removed or renamed (the dataset folders' mtimes: :meth:`rename` touches its folder) and this
        process changed nothing: each page run of each student lists the store several times, ~3 ms of stat calls
        each, for a store that rarely changes. Files damaged by hand are then seen up to that much later."""
        if self.reuse_listing_s <= 0:
            return self._scan_folders(dataset)
        stamp = (self._generation, self._folders_stamp())
        now = time.monotonic()
        with self._lock:
            memo = self._listings.get(dataset)
            if memo is not None and memo[0] == stamp and now - memo[1] < self.reuse_listing_s:
                return list(memo[2][0]), list(memo[2][1])
        listing = self._scan_folders(dataset)
        with self._lock:
            self._listings[dataset] = (stamp, now, listing)
        return list(listing[0]), list(listing[1])

    def _folders_stamp(self) -> tuple:
        """The mtimes of the root and of each dataset folder: an entry added, removed or renamed away changes one."""
        try:
            stamp = [self.root.stat().st_mtime_ns]
            stamp += [(p.name, p.stat().st_mtime_ns) for p in sorted(self.root.iterdir()) if p.is_dir()]
        except OSError:
            return (time.monotonic_ns(),)  # unreadable now: never equal, so never reused
        return tuple(stamp)

    def _changed(self) -> None:
        """This process changed the store: no listing made before is reused."""
        self._generation += 1

    def _scan_folders(self, dataset: str | None) -> tuple[list[StoredModel], list[DamagedEntry]]:
        if time.monotonic() - self._swept > SWEEP_INTERVAL_S:
            self._swept = time.monotonic()
            remove_stale_temporaries(self.root)
        models: list[StoredModel] = []
        damaged: list[DamagedEntry] = []
        if not self.root.exists():
            return models, damaged
        for dataset_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if dataset is not None and dataset_dir.name != dataset:
                continue
            for model_dir in sorted(dataset_dir.iterdir()):
                if model_dir.name.startswith(".") or not model_dir.is_dir():
                    continue  # a save's or a delete's temporary folder, or a stray file: no entry
                entry = self._entry(model_dir)
                if isinstance(entry, StoredModel):
                    models.append(entry)
                elif model_dir.is_dir():  # (not deleted meanwhile: a delete renames the folder away first)
                    damaged.append(entry)
        return sorted(models, key=lambda e: e.meta.get("created", ""), reverse=True), damaged

    # ---- paths and listing -------------------------------------------------------------
    def _dir(self, dataset: str, model_id: str) -> Path:
        return self.root / dataset / model_id

    def _find(self, model_id: str) -> Path | None:
        if not self.root.exists():
            return None
        if not model_id or model_id.startswith(".") or Path(model_id).name != model_id:
            return None  # not an entry's folder name (a temporary folder, or a path)
        for dataset_dir in self.root.iterdir():
            candidate = dataset_dir / model_id
            if not dataset_dir.name.startswith(".") and candidate.is_dir():
                return candidate
        return None

    def __contains__(self, model_id: str) -> bool:
        """Whether the store holds a usable model ``model_id`` (a damaged entry is not one)."""
        path = self._find(model_id)
        return path is not None and isinstance(self._entry(path), StoredModel)

    def list(self, dataset: str | None = None) -> list[StoredModel]:
        """Stored models, newest first. Entries that are not usable models are left out: see :meth:`damaged`."""
        return self._scan(dataset)[0]

    def damaged(self, dataset: str | None = None) -> list[DamagedEntry]:
        """The entries :meth:`list` leaves out, each with the reason: unreadable or invalid metadata, weights that are
        missing, truncated or failed to load. Their files are kept as they are, for the user to remove
        (:meth:`remove_damaged`) or repair."""
        return self._scan(dataset)[1]

    def get(self, model_id: str) -> StoredModel:
        """The entry of ``model_id``; KeyError when the store has none, InvalidCheckpointError when it is damaged."""
        path = self._find(model_id)
        if path is None:
            raise KeyError(f"No model {model_id!r} in the store at {self.root}")
        entry = self._entry(path)
        if isinstance(entry, DamagedEntry):
            raise InvalidCheckpointError(f"The stored model {entry.dataset}/{entry.folder} is damaged: {entry.reason}.")
        return entry

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
        return self._write_new(model_id, config.dataset, state_dict_of(result.model), meta, model=result.model)

    def _write_new(self, model_id: str, dataset: str, state: dict[str, torch.Tensor], meta: dict, model=None) -> StoredModel:
        with self._shared_lock, self._lock:
            existing = self._find(model_id)
            if existing is not None:
                entry = self._entry(existing)
                if isinstance(entry, DamagedEntry):  # never written over: its files stay for the user to judge
                    raise InvalidCheckpointError(
                        f"The store holds a damaged entry for this model, {entry.dataset}/{entry.folder} "
                        f"({entry.reason}): remove it on the Models page, then save the model again.")
                return entry
            # A new model never takes a name the dataset already uses, or one that reads as it (a typed name, or an
            # import's), nor invisible characters or more than a picker's 120 characters.
            meta = {**meta, "name": self.free_name(dataset, clean_name(meta.get("name") or "")[:120] or model_id)}
            final = self._dir(dataset, model_id)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{model_id}-", dir=final.parent))
            try:
                write_synced(tmp / "weights.safetensors", save_safetensors_bytes(state))
                write_synced(tmp / "meta.json", json.dumps(meta, indent=2, default=_json_default).encode())
                os.rename(tmp, final)  # atomic on one file system: readers see all or nothing
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self._changed()
            if model is not None:
                self._remember(model_id, model, self._signature(final))
            return StoredModel(model_id, final, meta)

    def load(self, model_id: str, *, device: torch.device | str | None = None):
        """The model ``model_id`` in eval mode (from memory when already loaded and its files unchanged: another
        process may have deleted or replaced it)."""
        with self._lock:
            model = self._memory.get(model_id)
            if model is not None:
                path = self._find(model_id)
                if path is None or self._signature(path) != self._memory_signature.get(model_id):
                    self._memory.pop(model_id, None)
                    model = None
            if model is None:
                entry = self.get(model_id)
                weights_path = entry.path / "weights.safetensors"
                signature = (stat_signature(entry.path / "meta.json"), stat_signature(weights_path))
                try:
                    state = load_safetensors_bytes(weights_path.read_bytes())
                    model = model_from_state(entry.meta, state)
                except (OSError, MemoryError):
                    raise  # the file could not be read now (or the dataset a k-NN refits from is missing): no damage
                except Exception as exc:  # safetensors, load_state_dict and the checks raise several types
                    reason = f"its weights do not load ({type(exc).__name__}: {str(exc)[:200]})"
                    # Set aside from now on, until its files change: the pages stop offering a model they cannot load.
                    self._unloadable[entry.path] = (signature, reason)
                    self._checked.pop(entry.path, None)
                    self._changed()
                    where = f"{entry.path.parent.name}/{model_id}"
                    message = f"The stored model “{entry.name}” ({where}) cannot be used: {reason}."
                    raise InvalidCheckpointError(message) from exc
                self._remember(model_id, model, signature)
            else:
                self._memory.move_to_end(model_id)
        if device is not None and isinstance(model, nn.Module):
            model = model.to(device)
        if isinstance(model, nn.Module):
            model.eval()
        return model

    @staticmethod
    def _signature(model_dir: Path) -> tuple:
        return stat_signature(model_dir / "meta.json"), stat_signature(model_dir / "weights.safetensors")

    def _remember(self, model_id: str, model, signature: tuple) -> None:
        self._memory[model_id] = model
        self._memory_signature[model_id] = signature
        self._memory.move_to_end(model_id)
        while len(self._memory) > MEMORY_CACHE_SIZE:
            forgotten, _ = self._memory.popitem(last=False)
            self._memory_signature.pop(forgotten, None)

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
        trained = []

        def train() -> StoredModel:
            self.refuse_damaged(model_id)
            result = train_model(config, data=data, device=device, on_progress=on_progress, should_stop=should_stop)
            trained.append(result.model)
            return self.save(result, name=name, extra_meta=extra_meta)

        # Under the training's lock: a process asking for the same configuration meanwhile waits, then loads it.
        entry = compute_once(self.root, f"train-{model_id}", read=lambda: self._usable(model_id), compute=train)
        if trained:
            return trained[0], entry, False
        return self.load(model_id, device=device), entry, True

    def _usable(self, model_id: str) -> StoredModel | None:
        return self.get(model_id) if model_id in self else None

    def training_job(self, config: TrainConfig, *, name: str | None = None, data=None,
                     extra_meta: dict[str, Any] | None = None) -> Callable[[Any], StoredModel]:
        """``train_or_load`` as a job for :class:`robust_core.jobs.JobRunner`: ``fn(ctx) -> StoredModel``.

        While it trains, ``ctx.job.details`` holds ``live`` (the curves so far: per-batch (epoch position, loss,
        accuracy) and per-epoch validation loss/accuracy, for a live chart) and ``last`` (the last progress event's
        numbers). ``ctx.progress`` raises ``JobCancelled`` once nobody wants the model: training stops between two
        batches and nothing is saved.

        Several requesters may share the job (the runner runs one training per key): each one's name and metadata,
        recorded with :func:`record_training_request`, are theirs; the model is saved with those of the first
        requester still waiting for it, so one who cancelled leaves neither their name nor their ownership on it.
        Without recorded requests, ``name`` and ``extra_meta`` are used.
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

            def train() -> StoredModel:
                self.refuse_damaged(config.config_hash())
                result = train_model(config, data=data, on_progress=on_progress)
                ctx.check()  # withdrawn by everyone during the last batch: nothing is saved
                chosen_name, chosen_meta = _remaining_request(ctx.job, name, extra_meta)
                return self.save(result, name=chosen_name, extra_meta=chosen_meta)

            # Another replica training the same configuration: wait for its model (cancellable), do not train twice.
            model_id = config.config_hash()
            return compute_once(self.root, f"train-{model_id}", read=lambda: self._usable(model_id), compute=train,
                                while_waiting=ctx.check)

        return run

    # ---- names --------------------------------------------------------------------------
    def name_owner(self, dataset: str, name: str, *, exclude: str | None = None) -> StoredModel | None:
        """The model of ``dataset`` (other than ``exclude``) whose name reads as ``name`` (:func:`names_look_alike`:
        case, spacing, invisible characters and Unicode look-alikes aside), if any."""
        return next((e for e in self.list(dataset) if e.model_id != exclude and names_look_alike(e.name, name)), None)

    def free_name(self, dataset: str, name: str, *, exclude: str | None = None) -> str:
        """``name`` (cleaned: :func:`clean_name`) if no other model of ``dataset`` has a name that reads as it, else the
        first free "name (2)", "name (3)", …"""
        name = clean_name(name)
        taken = [name_keys(e.name) for e in self.list(dataset) if e.model_id != exclude]
        taken_sets = [{keys[i] for keys in taken} for i in range(2)]
        candidate, n = name, 1
        while any(key in keys for key, keys in zip(name_keys(candidate), taken_sets)):
            n += 1
            candidate = f"{name} ({n})"
        return candidate

    def check_name(self, dataset: str, name: str, *, exclude: str | None = None) -> str:
        """``name`` as the store would keep it (:func:`clean_name`), or StoreError saying why no model of ``dataset``
        (other than ``exclude``) may take it: empty, longer than 120 characters, or reading as another model's name
        (pickers and confirmations show names, so a look-alike would pass for that model)."""
        if len(name) > 1000:  # (refused before cleaning: a forged 8 MB name cost 1.6 s of it)
            raise StoreError("A model name is at most 120 characters.")
        cleaned = clean_name(name)
        if not cleaned:
            raise StoreError("A model name cannot be empty (invisible characters do not count).")
        if len(cleaned) > 120:
            raise StoreError("A model name is at most 120 characters.")
        owner = self.name_owner(dataset, cleaned, exclude=exclude)
        if owner is not None:
            title = DATASETS[dataset].title if dataset in DATASETS else dataset
            same = ("named" if clean_name(owner.name) == cleaned
                    else "named alike (case, spacing or look-alike letters aside):")
            raise StoreError(f"Another {title} model is already {same} “{owner.name}” (id {owner.model_id}). "
                             "Choose a different name.")
        return cleaned

    # ---- editing ------------------------------------------------------------------------
    def rename(self, model_id: str, new_name: str) -> StoredModel:
        """Give ``model_id`` a new name; StoreError if another model of its dataset has a name that reads as it
        (:meth:`check_name`: case, spacing, invisible characters and look-alike letters aside), since pickers and
        confirmations show names."""
        with self._shared_lock, self._lock:
            entry = self.get(model_id)
            new_name = self.check_name(entry.path.parent.name, new_name, exclude=model_id)
            meta = {**entry.meta, "name": new_name}
            _atomic_write_text(entry.path / "meta.json", json.dumps(meta, indent=2, default=_json_default))
            os.utime(entry.path.parent)  # an edit in place: the dataset folder's mtime tells every replica's listing
            self._changed()
            return StoredModel(model_id, entry.path, meta)

    def refuse_damaged(self, model_id: str) -> None:
        """InvalidCheckpointError when the store holds a damaged entry under ``model_id``: training it again would
        end in a save refused (a damaged entry is never written over), so say it before the work."""
        path = self._find(model_id)
        entry = None if path is None else self._entry(path)
        if isinstance(entry, DamagedEntry):
            raise InvalidCheckpointError(
                f"The store holds a damaged entry for this configuration, {entry.dataset}/{entry.folder} "
                f"({entry.reason}): remove it on the Models page, then train again.")

    def remove_damaged(self, dataset: str, folder: str) -> None:
        """Delete the damaged entry ``folder`` of ``dataset`` (as :meth:`damaged` names it) with all its files: the
        user's decision, never the store's. StoreError if it is not (or no longer) a damaged entry: a usable model
        is deleted with :meth:`delete`, which lecture mode checks."""
        with self._shared_lock, self._lock:
            entry = next((d for d in self.damaged(dataset) if d.folder == folder and d.dataset == dataset), None)
            if entry is None:
                raise StoreError(f"{dataset}/{folder} is not a damaged entry of the store; nothing was removed.")
            trash = entry.path.parent / f".deleted-{folder}-{time.time_ns()}"
            os.rename(entry.path, trash)
            shutil.rmtree(trash, ignore_errors=True)
            self._checked.pop(entry.path, None)
            self._unloadable.pop(entry.path, None)
            self._memory.pop(folder, None)
            self._changed()

    def delete(self, model_id: str) -> None:
        with self._shared_lock, self._lock:
            entry = self.get(model_id)
            # Rename first so the entry vanishes atomically even if removing the files fails half-way.
            trash = entry.path.parent / f".deleted-{model_id}-{time.time_ns()}"
            os.rename(entry.path, trash)
            shutil.rmtree(trash, ignore_errors=True)
            self._memory.pop(model_id, None)
            self._memory_signature.pop(model_id, None)
            self._changed()

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


_atomic_write_text = atomic_write_text  # (the name robust_core.shipped imports)


def _json_default(value):
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)
