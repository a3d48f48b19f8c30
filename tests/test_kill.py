"""SIGKILL the process mid-training and mid-save, then restart: the store holds exactly the complete models."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from robust_core.store import ModelStore

REPO = Path(__file__).resolve().parents[1]

# A child that saves one complete model, then trains a second one and, when told, stops at a chosen moment
# (printing "READY <moment>") and waits to be killed: mid-training (between two batches) or mid-save (the new
# model's files written in its temporary folder, just before the atomic rename).
CHILD = textwrap.dedent("""
    import os, sys, time
    import torch
    from robust_core.data import load_dataset
    from robust_core.store import ModelStore
    from robust_core.training import TrainConfig

    moment = sys.argv[1]
    data = load_dataset("mnist", download=False)
    store = ModelStore(os.environ["ROBUST_STORE_DIR"])
    store.train_or_load(TrainConfig(train_subset=300, epochs=1, batch_size=100, seed=1), data=data)

    def hang(label):
        print("READY", label, flush=True)
        time.sleep(120)

    def on_progress(event):
        if moment == "training" and event.kind == "batch" and event.batch >= 2:
            hang("training")

    if moment == "save":
        real_rename = os.rename
        def rename(src, dst):
            if ".tmp-" in str(src):
                hang("save")
            return real_rename(src, dst)
        os.rename = rename  # the store's save renames its temporary folder into place with os.rename
    store.train_or_load(TrainConfig(train_subset=1000, epochs=1, batch_size=100, seed=2), data=data,
                        on_progress=on_progress)
    print("FINISHED", flush=True)
""")


@pytest.mark.parametrize("moment", ["training", "save"])
def test_a_killed_server_leaves_only_complete_models(moment, isolated_store, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "ROBUST_STORE_DIR": str(isolated_store), "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, str(script), moment], env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and not line.startswith("READY"):
            line = child.stdout.readline()
            assert line or child.poll() is None, "the child ended before the moment to kill it"
        assert line.strip() == f"READY {moment}"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    # Restart: exactly the first, complete model; it loads; the half-written one is invisible.
    store = ModelStore(isolated_store)
    [entry] = store.list()
    assert entry.meta["config"]["seed"] == 1
    store.load(entry.model_id)
    leftovers = [p.name for p in (isolated_store / "mnist").iterdir() if p.name.startswith(".tmp-")]
    assert (moment == "save") == bool(leftovers)  # killed mid-save: a temporary folder, ignored
    # The interrupted model trains again from scratch, and the store then lists both.
    from robust_core.data import load_dataset
    from robust_core.training import TrainConfig

    store.train_or_load(TrainConfig(train_subset=1000, epochs=1, batch_size=100, seed=2),
                        data=load_dataset("mnist", download=False))
    assert sorted(e.meta["config"]["seed"] for e in store.list()) == [1, 2]
