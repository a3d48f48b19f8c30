"""Checks of the model store's folders: which are complete, readable models, and why the others are not.

A store is files anyone can edit, copy or truncate (a full disk, a killed copy, a hand edit). One damaged entry must
not take every page down, nor vanish without a word: :class:`robust_core.store.ModelStore` lists the entries that
pass these checks and sets the others aside as :class:`DamagedEntry` (folder and reason), for the user to remove.
The checks read the metadata and the weights' header only (the tensors are checked when a model is loaded), and
nothing here changes an entry's files.

A reason never holds a filesystem path (lecture-mode visitors see reasons), but it may quote the file's own content:
show it as plain text.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..weights_files import TruncatedWeightsFile, WeightsFileError, safetensors_header

META_FILE = "meta.json"
WEIGHTS_FILE = "weights.safetensors"
# Folders a save writes into before renaming them into place, and folders a delete renames away before removing them.
TEMPORARY_PREFIXES = (".tmp-", ".deleted-")
# A temporary folder untouched this long belongs to a save or a delete that was killed: a save in progress writes
# its two files within seconds (a 200 MB upload within a minute), each write touching the folder or its files.
STALE_TEMPORARY_S = 15 * 60
REASON_CHARS = 300  # a reason may quote the file's content: bounded, so a crafted file cannot flood the page


@dataclass(frozen=True)
class DamagedEntry:
    """A folder of the store that is not a usable model, and why. ``name`` is the name its metadata gives, if any."""

    dataset: str  # the dataset folder's name
    folder: str  # the entry's folder name: the model id, for an entry the store wrote
    path: Path
    reason: str
    name: str | None = None


def check_entry(model_dir: Path) -> tuple[dict | None, str | None]:
    """(metadata, None) for a folder holding a usable model, else (the metadata if it could be parsed, the reason)."""
    meta_path, weights_path = model_dir / META_FILE, model_dir / WEIGHTS_FILE
    has_meta, has_weights = meta_path.is_file(), weights_path.is_file()
    if not has_meta and not has_weights:
        return None, f"the folder holds no model ({META_FILE} and {WEIGHTS_FILE} are missing)"
    if not has_meta:
        return None, f"{META_FILE} is missing"
    meta, problem = read_meta(meta_path)
    if problem is None:
        problem = meta_problem(meta, dataset=model_dir.parent.name)
    if problem is None:
        problem = f"{WEIGHTS_FILE} is missing" if not has_weights else weights_problem(weights_path)
    return (meta if isinstance(meta, dict) else None), problem


def read_meta(path: Path) -> tuple[Any, str | None]:
    """(parsed ``meta.json``, None), or (None, why it cannot be parsed)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, f"{path.name} cannot be read ({exc.strerror or type(exc).__name__})"
    if not raw.strip():
        return None, f"{path.name} is empty"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"{path.name} is not UTF-8 text (byte {exc.start} of {len(raw):,}): corrupted"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(text.rstrip()) - 1 or exc.msg.startswith("Unterminated")
        kind = "ends too early (truncated)" if truncated else "is not valid JSON (corrupted)"
        return None, _bounded(f"{path.name} {kind}: {exc.msg} at line {exc.lineno}, column {exc.colno}")
    except RecursionError:
        return None, f"{path.name} nests too deeply to be metadata"


def meta_problem(meta: Any, *, dataset: str) -> str | None:
    """Why ``meta`` (a parsed ``meta.json`` found in the folder of ``dataset``) is not a model's metadata that every
    page can show, or None. The fields the pages read must have the types the store writes."""
    from ..training import TrainConfig

    if not isinstance(meta, dict):
        return f"{META_FILE} holds {_json_kind(meta)}, not the model's metadata (a JSON object)"
    config = meta.get("config")
    if not isinstance(config, dict):
        return (f"{META_FILE} has no training configuration (no \"config\")" if config is None
                else f"its training configuration is {_json_kind(config)}, not a JSON object")
    for key in ("arch_kwargs", "method_kwargs"):
        if key in config and not isinstance(config[key], dict):
            return f"its training configuration's {key} is {_json_kind(config[key])}, not a JSON object"
    try:
        parsed = TrainConfig.from_dict(config)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a value of the wrong type fails a check
        return _bounded(f"its training configuration is invalid: {exc}")
    if parsed.dataset != dataset:
        return _bounded(f"it is a model of {parsed.dataset!r} in the folder of dataset {dataset!r}")
    fields = {"name": (str,), "created": (str,), "owner": (str,), "metrics": (dict,), "history": (dict,),
              "versions": (dict,), "parameters": (int, type(None)), "wall_time_s": (int, float, type(None))}
    for key, types in fields.items():
        value = meta.get(key)
        if key in meta and (not isinstance(value, types) or isinstance(value, bool)):
            return f"its {key!r} is {_json_kind(value)}, which no model's metadata holds"
    if "metrics" not in meta:
        return f"{META_FILE} has no metrics"
    for key, value in meta["metrics"].items():
        if not _number_or_none(value):
            return _bounded(f"its metric {key!r} is {_json_kind(value)}, not a number")
    history = meta.get("history", {})
    for key in ("epoch", "val_loss", "val_acc"):
        values = history.get(key, [])
        if not (isinstance(values, list) and all(_number_or_none(v) for v in values)):
            return f"its training history's {key!r} is not a list of numbers"
    lengths = {len(history.get(key, [])) for key in ("epoch", "val_loss", "val_acc")}
    if history.get("epoch") and len(lengths) > 1:
        return "its training history's epochs and validation curves differ in length"
    batches = history.get("batches", [])
    if not (isinstance(batches, list)
            and all(isinstance(b, list) and len(b) >= 3 and all(_number_or_none(v) for v in b[:3]) for b in batches)):
        return "its training history's 'batches' are not (epoch, loss, accuracy) triples"
    return None


def weights_problem(path: Path) -> str | None:
    """Why ``weights.safetensors`` at ``path`` is not a whole safetensors file, from its header and size, or None.

    A truncated or extended file is told apart without reading the tensors: the header says where each tensor lies,
    so the file's size must be exactly what the header declares (safetensors refuses any other size when loading)."""
    try:
        safetensors_header(path, max_bytes=sys.maxsize)  # the store's own saves: no cap on their size
    except OSError as exc:
        return f"{path.name} cannot be read ({exc.strerror or type(exc).__name__})"
    except TruncatedWeightsFile as exc:
        return _bounded(f"{path.name} is truncated: {exc}")
    except WeightsFileError as exc:
        return _bounded(f"{path.name} is corrupted: {exc}")
    return None


def remove_stale_temporaries(root: Path, *, max_age_s: float = STALE_TEMPORARY_S) -> list[Path]:
    """Remove what killed saves, deletes and metadata edits left behind in the store at ``root``: ``.tmp-*`` and
    ``.deleted-*`` folders beside the models, and ``.meta.json.*`` files in a model's folder, once nothing has touched
    them for ``max_age_s`` seconds (a save in progress, in another thread or process, is younger). Never a model's own
    files. Returns what was removed; errors are ignored (another process may be removing the same leftover)."""
    removed: list[Path] = []
    now = time.time()
    try:
        dataset_dirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return removed
    for dataset_dir in dataset_dirs:
        try:
            children = list(dataset_dir.iterdir())
        except OSError:
            continue
        for child in children:
            try:
                if child.name.startswith(TEMPORARY_PREFIXES) and child.is_dir():
                    if now - _newest_mtime(child) > max_age_s:
                        shutil.rmtree(child, ignore_errors=True)
                        removed.append(child)
                elif not child.name.startswith(".") and child.is_dir():
                    for leftover in child.glob(f".{META_FILE}.*"):
                        if leftover.is_file() and now - leftover.stat().st_mtime > max_age_s:
                            leftover.unlink(missing_ok=True)
                            removed.append(leftover)
            except OSError:
                continue
    return removed


def stat_signature(path: Path) -> tuple[int, int, int] | None:
    """(inode, size, mtime) of ``path``, None when it cannot be read: every edit the store makes replaces a file, so
    an unchanged signature means unchanged content."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _newest_mtime(folder: Path) -> float:
    newest = folder.stat().st_mtime
    for child in folder.iterdir():
        try:
            newest = max(newest, child.stat().st_mtime)
        except OSError:
            continue
    return newest


def _number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _json_kind(value: Any) -> str:
    kinds = {dict: "a JSON object", list: "a JSON list", str: "a string", bool: "true/false", int: "a number",
             float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _bounded(text: str) -> str:
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"
