"""The store itself, :class:`ModelStore`: listing (checked entries, damaged ones set aside), saving and loading, names,
edits, import and export. The folder layout and what several processes may do at once: :mod:`robust_core.store`."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from ..checkpoints import (EXPORT_META_KEY, InvalidCheckpointError, StoreError, model_from_state, read_checkpoint,
                           state_dict_of)
from ..data import DATASETS
from ..file_locks import FolderLock, atomic_write_text, write_synced
from ..models import parameter_count
from ..names import clean_name, name_keys, names_look_alike
from ..training import TrainConfig, TrainResult
from .checks import DamagedEntry, check_entry, remove_stale_temporaries, stat_signature
from .entries import FORMAT_VERSION, StoredModel, default_name, json_default, library_versions, resolve_store_dir
from .external import StoreExternal, WeightsImport
from .training import StoreTraining

# Trained networks kept in memory: small models (a few MB each), reused by every page.
MEMORY_CACHE_SIZE = 16
# How often listing the store also removes what killed saves left behind (opening the store does it too).
SWEEP_INTERVAL_S = 600


class ModelStore(StoreTraining, StoreExternal, WeightsImport):
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
        """The mtimes of the root and of each dataset folder: an entry added, removed or renamed away changes one.

        One ``scandir`` of the root and one stat per dataset folder: each student's page run asks several times. The
        dot folders (the room's ledger, locks, the challenge database) are no datasets, and change all the time."""
        try:
            stamp = [self.root.stat().st_mtime_ns]
            with os.scandir(self.root) as entries:
                stamp += sorted((e.name, e.stat().st_mtime_ns) for e in entries
                                if not e.name.startswith(".") and e.is_dir())
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
    def save(self, result: TrainResult, *, name: str | None = None,
             extra_meta: dict[str, Any] | None = None) -> StoredModel:
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

    def _write_new(self, model_id: str, dataset: str, state: dict[str, torch.Tensor], meta: dict,
                   model=None) -> StoredModel:
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
                write_synced(tmp / "meta.json", json.dumps(meta, indent=2, default=json_default).encode())
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
            atomic_write_text(entry.path / "meta.json", json.dumps(meta, indent=2, default=json_default))
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
        return save_safetensors_bytes(state, metadata={EXPORT_META_KEY: json.dumps(entry.meta, default=json_default)})

    def export_file(self, model_id: str, path: str | os.PathLike) -> Path:
        """Write the export to ``path`` (.safetensors) and a readable copy of its metadata beside it (.json)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.export_bytes(model_id))
        meta = {k: v for k, v in self.get(model_id).meta.items() if k != "history"}
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, default=json_default) + "\n")
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
