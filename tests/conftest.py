"""Test set-up: data from ../shared/data when present (never a download), a fresh store per test."""
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests read the datasets from the folder CI provides beside the clone; an explicit
# ROBUST_DATA_DIR wins so a developer can point elsewhere.
if "ROBUST_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["ROBUST_DATA_DIR"] = str(SHARED_DATA)
os.environ.setdefault("ROBUST_DEVICE", "cpu")  # tests assert CPU determinism
os.environ["ROBUST_OFFLINE"] = "1"  # a test never downloads: these machines have no internet
os.environ.setdefault("ROBUST_SHIPPED_MODELS", "0")  # pages start from an empty store unless a test asks
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two test processes on 2 cores: one thread each (and in the servers they start). OpenMP threads that wait for
    # each other on an oversubscribed machine made small steps 10-100x slower (tests/test_minimal_norm.py).
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    """Every test gets an empty model store of its own; the user's store is never touched."""
    root = tmp_path / "store"
    monkeypatch.setenv("ROBUST_STORE_DIR", str(root))
    return root


@pytest.fixture(autouse=True)
def seeded():
    """Every test draws the same random numbers on every run and machine (a test's own torch.rand, an untrained
    network's weights): a verdict must not depend on which draw a run got."""
    import random

    import numpy

    torch.manual_seed(0)
    random.seed(0)
    numpy.random.seed(0)


@pytest.fixture(autouse=True)
def fresh_lecturer_key_guard():
    """Each test starts with no wrong lecturer keys counted: the guard is one per server process, and the tests share
    one process (a test typing a wrong key must not lock a later test's lecturer out)."""
    import sys

    audience = sys.modules.get("lab_pages._audience")
    if audience is not None:
        audience.lecturer_key_guard.clear()
    yield


@pytest.fixture(scope="session")
def mnist():
    from robust_core.data import load_dataset

    return load_dataset("mnist", download=False)


@pytest.fixture(scope="session")
def tiny_result(mnist):
    """A seed CNN trained for one epoch on 1,000 images in batches of 64 (about a second, ~80% accurate)."""
    from robust_core.training import TrainConfig, train_model

    return train_model(TrainConfig(train_subset=1000, epochs=1, batch_size=64, seed=0), data=mnist, device="cpu")


@pytest.fixture(scope="session")
def small_cnn(mnist):
    """A seed CNN trained for 2 epochs on 5,000 images (about 96% accurate, a few seconds): attacks need
    a model whose decision regions mean something; the 1,000-image one cannot even be steered to a target."""
    from robust_core.training import TrainConfig, train_model

    return train_model(TrainConfig(train_subset=5000, epochs=2, seed=0), data=mnist, device="cpu").model


@pytest.fixture
def store(isolated_store):
    from robust_core.store import ModelStore

    return ModelStore(isolated_store)


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def two_models(isolated_store, tiny_result, mnist):
    """Two small stored networks, "first" and "second": (id of first, id of second)."""
    from robust_core.store import ModelStore
    from robust_core.training import TrainConfig, train_model

    store = ModelStore(isolated_store)
    first = store.save(tiny_result, name="first")
    second = store.save(train_model(TrainConfig(train_subset=500, epochs=1, batch_size=64, seed=3), data=mnist),
                        name="second")
    return first.model_id, second.model_id
