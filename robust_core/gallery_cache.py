"""Crafted galleries (:func:`robust_core.gallery.gallery_frames`) kept beside their model in the store, so that every
process sharing the store (dashboard replicas, on one host or several) crafts a gallery once: the others wait for it
and read it.

Files: ``<store>/<dataset>/<model_id>/galleries/<digest>.npz`` (NumPy arrays only, read without pickle). ``digest``
names everything the gallery depends on (the curves' evaluation key, which holds the attack's code version, the
images and the slider's ε). A file that does not read back whole is crafted again and replaced.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Callable

import numpy as np

from .file_locks import atomic_write_bytes, compute_once

FIELDS = ("clean", "labels", "adversarial", "predictions", "confidences")
# Galleries kept per model, the newest: about 1 MB each, and a visitor picks the images and the attack's parameters,
# so without a bound a room could fill the store's disk with galleries nobody opens again.
KEPT_PER_MODEL = 32


def gallery_digest(evaluation_digest: str, indices, eps_frames) -> str:
    """The name of a gallery: the evaluation its minimal ε come from, its images (test indices) and its frames' ε."""
    text = f"{evaluation_digest}|{tuple(int(i) for i in indices)}|{tuple(float(e) for e in eps_frames)}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class GalleryCache:
    """Read and write galleries of the models in ``store`` (a :class:`robust_core.store.ModelStore`)."""

    def __init__(self, store):
        self.store = store

    def path(self, model_id: str, digest: str):
        return self.store.get(model_id).path / "galleries" / f"{digest}.npz"

    def get(self, model_id: str, digest: str) -> dict[str, np.ndarray] | None:
        """The gallery's arrays, or None when it was never crafted or its file is damaged."""
        path = self.path(model_id, digest)
        try:
            with np.load(path, allow_pickle=False) as arrays:
                gallery = {name: arrays[name] for name in FIELDS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        return gallery

    def put(self, model_id: str, digest: str, gallery: dict[str, np.ndarray]) -> None:
        path = self.path(model_id, digest)
        path.parent.mkdir(exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **{name: np.asarray(gallery[name]) for name in FIELDS})
        atomic_write_bytes(path, buffer.getvalue())
        stored = sorted(path.parent.glob("*.npz"), key=lambda p: p.stat().st_mtime_ns)
        for old in stored[:-KEPT_PER_MODEL]:
            old.unlink(missing_ok=True)

    def get_or_craft(self, model_id: str, digest: str, craft: Callable[[], dict[str, np.ndarray]], *,
                     while_waiting: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
        """The stored gallery, else ``craft()``'s, stored: once for every process of the store (the lock
        ``gallery-<model>-<digest>``; a process asking meanwhile waits, then reads it)."""
        def compute():
            gallery = craft()
            self.put(model_id, digest, gallery)
            return gallery
        return compute_once(self.store.root, f"gallery-{model_id}-{digest}", read=lambda: self.get(model_id, digest),
                            compute=compute, while_waiting=while_waiting)
