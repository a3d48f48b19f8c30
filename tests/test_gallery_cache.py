"""Crafted galleries in the store: one craft for every replica sharing it, a damaged file crafted again."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.test_cross_process import REPO, _finish, _tiny_result, _wait_file, _wait_for


def _spawn(function: str, **kwargs) -> subprocess.Popen:
    code = f"import json, sys; from tests.test_gallery_cache import {function} as f; f(**json.loads(sys.argv[1]))"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(kwargs)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _gallery(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"clean": rng.random((8, 28, 28), dtype=np.float32), "labels": rng.integers(0, 10, 8),
            "adversarial": rng.random((41, 8, 28, 28), dtype=np.float32), "predictions": rng.integers(0, 10, (41, 8)),
            "confidences": rng.random((41, 8), dtype=np.float32)}


def _child_craft(root: str, model_id: str, digest: str, go: str, counter: str, out: str) -> None:
    """``get_or_craft`` with a counted craft that takes a second: two processes overlap surely."""
    from robust_core.gallery_cache import GalleryCache
    from robust_core.store import ModelStore

    def craft():
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        return _gallery(7)

    cache = GalleryCache(ModelStore(root))
    Path(out + ".ready").touch()
    _wait_file(go)
    gallery = cache.get_or_craft(model_id, digest, craft)
    Path(out).write_text(json.dumps(gallery["confidences"].tolist()))


def test_a_gallery_two_replicas_ask_for_at_once_is_crafted_once_and_read_by_both(tmp_path):
    from robust_core.store import ModelStore

    root, go, counter = tmp_path / "store", tmp_path / "go", tmp_path / "counter"
    model_id = ModelStore(root).save(_tiny_result(4), name="gallery model").model_id
    outs = [tmp_path / f"out{i}" for i in range(2)]
    children = [_spawn("_child_craft", root=str(root), model_id=model_id, digest="d" * 32, go=str(go),
                       counter=str(counter), out=str(out)) for out in outs]
    for out in outs:
        _wait_for(Path(f"{out}.ready"), *children)
    go.touch()
    for child in children:
        _finish(child)
    assert len(counter.read_text().split()) == 1, "crafted more than once"
    first, second = (json.loads(out.read_text()) for out in outs)
    assert first == second == _gallery(7)["confidences"].tolist()


def test_a_damaged_gallery_file_is_crafted_again_and_replaced(tmp_path):
    from robust_core.gallery_cache import GalleryCache, gallery_digest
    from robust_core.store import ModelStore

    store = ModelStore(tmp_path)
    model_id = store.save(_tiny_result(5), name="gallery model").model_id
    cache = GalleryCache(store)
    digest = gallery_digest("evaluation", range(8), np.linspace(0, 0.4, 41))
    assert digest != gallery_digest("evaluation", range(1, 9), np.linspace(0, 0.4, 41))  # other images, other file
    assert cache.get(model_id, digest) is None
    cache.put(model_id, digest, _gallery(1))
    assert np.array_equal(cache.get(model_id, digest)["adversarial"], _gallery(1)["adversarial"])
    cache.path(model_id, digest).write_bytes(b"PK\x03\x04 not a whole zip")
    assert cache.get(model_id, digest) is None
    crafted = cache.get_or_craft(model_id, digest, lambda: _gallery(2))
    assert np.array_equal(crafted["labels"], _gallery(2)["labels"])
    assert np.array_equal(cache.get(model_id, digest)["labels"], _gallery(2)["labels"])
    assert not list(cache.path(model_id, digest).parent.glob(".*"))  # no temporary file left


def test_a_model_keeps_only_its_newest_galleries(tmp_path, monkeypatch):
    from robust_core import gallery_cache
    from robust_core.gallery_cache import GalleryCache
    from robust_core.store import ModelStore

    monkeypatch.setattr(gallery_cache, "KEPT_PER_MODEL", 3)
    store = ModelStore(tmp_path)
    model_id = store.save(_tiny_result(6), name="gallery model").model_id
    cache = GalleryCache(store)
    for i in range(5):
        cache.put(model_id, f"{i:032d}", _gallery(i))
        time.sleep(0.01)  # distinct modification times
    kept = sorted(p.stem for p in cache.path(model_id, "x").parent.glob("*.npz"))
    assert kept == [f"{i:032d}" for i in (2, 3, 4)]
    assert cache.get(model_id, f"{0:032d}") is None and cache.get(model_id, f"{4:032d}") is not None
