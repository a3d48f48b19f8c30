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

Modules: :mod:`.entries` (the store folder, an entry, the names pickers show), :mod:`.checks` (which folders are usable
models, and why the others are not), :mod:`.model_store` (:class:`ModelStore`: listing, saving, loading, names, edits,
import and export), :mod:`.training` (a configuration trained once per store, as a call or a shared job).
"""
from ..checkpoints import EXPORT_META_KEY, InvalidCheckpointError, StoreError
from .checks import DamagedEntry
from .entries import (
    FORMAT_VERSION,
    STORE_DIR_ENV,
    StoredModel,
    default_name,
    default_store_dir,
    display_names,
    library_versions,
    resolve_store_dir,
)
from .model_store import MEMORY_CACHE_SIZE, SWEEP_INTERVAL_S, ModelStore
from .training import TRAINING_REQUESTS, record_training_request

__all__ = [
    "EXPORT_META_KEY", "FORMAT_VERSION", "MEMORY_CACHE_SIZE", "STORE_DIR_ENV", "SWEEP_INTERVAL_S", "TRAINING_REQUESTS",
    "DamagedEntry", "InvalidCheckpointError", "ModelStore", "StoreError", "StoredModel", "default_name",
    "default_store_dir", "display_names", "library_versions", "record_training_request", "resolve_store_dir",
]
