"""Replicas sharing one store folder: the store, the computation locks and the room's ledger across real processes.

Each child is a separate Python process (``python -c``) that runs one of the ``_child_*`` functions below; parent and
children meet through marker files in ``tmp_path`` (never through timing alone). Heavy imports stay inside the
functions, so a child that only takes locks starts without torch.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WAIT_S = 60.0  # a child's start on a loaded 2-core machine (torch's import) stays far below it


def _spawn(function: str, **kwargs) -> subprocess.Popen:
    code = f"import json, sys; from tests.test_cross_process import {function} as f; f(**json.loads(sys.argv[1]))"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(kwargs)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path: Path, *children: subprocess.Popen, timeout: float = WAIT_S) -> None:
    """Wait until ``path`` exists; fail with a child's output if one exits with an error meanwhile."""
    end = time.monotonic() + timeout
    while not path.exists():
        for child in children:
            if child.poll() not in (None, 0):
                pytest.fail(f"a child process failed:\n{child.stdout.read()}")
        if time.monotonic() > end:
            pytest.fail(f"{path.name} did not appear within {timeout:g} s")
        time.sleep(0.02)


def _finish(child: subprocess.Popen, timeout: float = WAIT_S) -> None:
    out, _ = child.communicate(timeout=timeout)
    assert child.returncode == 0, out


def _wait_file(path: str) -> None:
    while not Path(path).exists():
        time.sleep(0.01)


def _tiny_result(seed: int):
    """A freshly initialised small MLP as a training result (no training: the store's behaviour is under test)."""
    import torch

    from robust_core.models import build_model
    from robust_core.training import TrainConfig, TrainResult

    torch.manual_seed(seed)
    config = TrainConfig(arch="mlp", arch_kwargs={"hidden": [8]}, seed=seed, epochs=1)
    return TrainResult(build_model("mlp", "mnist", hidden=[8]), config, {"test_acc": 0.1})


# ---- the children ------------------------------------------------------------------------------------------------
def _child_save_and_rename(root: str, seed: int, go: str, go_rename: str, out: str) -> None:
    """Save a model named "shared" once ``go`` exists, then try to rename it "final" once ``go_rename`` exists. Checks
    are slowed down, so that without the store's lock both processes would check before either writes."""
    from robust_core import store as store_mod
    from robust_core.store import ModelStore, StoreError

    free_name, check_name = store_mod.ModelStore.free_name, store_mod.ModelStore.check_name

    def slow_free_name(self, *args, **kwargs):
        name = free_name(self, *args, **kwargs)
        time.sleep(0.5)
        return name

    def slow_check_name(self, *args, **kwargs):
        name = check_name(self, *args, **kwargs)
        time.sleep(0.5)
        return name

    store_mod.ModelStore.free_name, store_mod.ModelStore.check_name = slow_free_name, slow_check_name
    store = ModelStore(root)
    result = _tiny_result(seed)
    Path(out + ".ready").touch()
    _wait_file(go)
    entry = store.save(result, name="shared")
    Path(out + ".saved").touch()
    _wait_file(go_rename)
    try:
        store.rename(entry.model_id, "final")
        renamed = "renamed"
    except StoreError as exc:
        renamed = f"refused: {exc}"
    Path(out).write_text(json.dumps({"id": entry.model_id, "name": entry.name, "rename": renamed}))


def _child_save_then_delete(root: str, seed: int, go_delete: str, out: str) -> None:
    from robust_core.store import ModelStore

    store = ModelStore(root)
    entry = store.save(_tiny_result(seed), name="from the other replica")
    Path(out).write_text(entry.model_id)
    _wait_file(go_delete)
    store.delete(entry.model_id)
    Path(out + ".deleted").touch()


def _child_evaluate(root: str, model_id: str, go: str, counter: str, out: str) -> None:
    """``cached_minimal_eps`` (FGSM, 16 images) with a counted, slowed-down search: two processes overlap surely."""
    import torch

    from robust_core import evaluation
    from robust_core.evaluation import EvaluationCache, cached_minimal_eps
    from robust_core.store import ModelStore

    search = evaluation.minimal_eps

    def counted(*args, **kwargs):
        with open(counter, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        return search(*args, **kwargs)

    evaluation.cache.minimal_eps = counted  # the search cached_minimal_eps runs
    store = ModelStore(root)
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 1, 28, 28, generator=generator), torch.randint(0, 10, (16,), generator=generator)
    Path(out + ".ready").touch()
    _wait_file(go)
    values = cached_minimal_eps(store, EvaluationCache(store), model_id, x, y, attack="fgsm", seed=0)
    Path(out).write_text(json.dumps([v if v != float("inf") else "inf" for v in values.tolist()]))


def _child_compute(root: str, name: str, marker: str, result: str, hold_s: float) -> None:
    """A computation through :func:`compute_once`: marks that it computes (or waits), holds ``hold_s`` seconds, then
    stores its pid as the result."""
    from robust_core.file_locks import compute_once

    def read():
        return Path(result).read_text() if Path(result).exists() else None

    def compute():
        Path(marker + ".computing").touch()
        time.sleep(hold_s)
        Path(result).write_text(str(os.getpid()))
        return str(os.getpid())

    found = compute_once(root, name, read=read, compute=compute,
                         while_waiting=lambda: Path(marker + ".waiting").touch())
    Path(marker + ".done").write_text(found)


def _child_visitor_jobs(root: str, ready: str) -> None:
    """Replica A: visitor "v" has two jobs (running and queued) that never finish; the process then waits to die."""
    from robust_core.jobs import JobRunner
    from robust_core.room_ledger import RoomLedger

    runner = JobRunner(workers={"long": 1}, visitor_jobs=2, ledger=RoomLedger(root, replica_id="replica-a"))

    def forever(ctx):
        while True:
            time.sleep(0.05)
            ctx.check()

    runner.submit("a1", forever, owner="v", lane="long", limited=True)
    runner.submit("a2", forever, owner="v", lane="long", limited=True)
    Path(ready).touch()
    time.sleep(600)


def _child_key_attempts(root: str, out: str) -> None:
    """Replica A: the lecturer enters the key, then three forged visitors fail (the room's bound is 3)."""
    from robust_core.lecturer_key import LecturerKeyGuard
    from robust_core.room_ledger import RoomLedger

    guard = LecturerKeyGuard(visitor_failures=10, server_failures=3, min_interval_s=0,
                             ledger=RoomLedger(root, replica_id="replica-a"))
    environ = {"ROBUST_LECTURER_KEY": "correct horse"}
    verdicts = [guard.attempt("correct horse", visitor="lecturer", environ=environ).accepted]
    verdicts += [guard.attempt("guess", visitor=f"forged-{i}", environ=environ).message for i in range(3)]
    Path(out).write_text(json.dumps(verdicts))


# ---- the tests ---------------------------------------------------------------------------------------------------
def test_two_processes_saving_one_name_at_once_get_the_name_and_a_free_variant(tmp_path):
    root = tmp_path / "store"
    go, go_rename = tmp_path / "go", tmp_path / "go-rename"
    outs = [tmp_path / f"out{i}" for i in range(2)]
    children = [_spawn("_child_save_and_rename", root=str(root), seed=i + 1, go=str(go), go_rename=str(go_rename),
                       out=str(out)) for i, out in enumerate(outs)]
    for out in outs:
        _wait_for(Path(f"{out}.ready"), *children)
    go.touch()
    for out in outs:
        _wait_for(Path(f"{out}.saved"), *children)
    go_rename.touch()
    for child in children:
        _finish(child)
    results = [json.loads(out.read_text()) for out in outs]
    assert results[0]["id"] != results[1]["id"]
    assert sorted(r["name"] for r in results) == ["shared", "shared (2)"]
    renames = sorted(r["rename"] for r in results)
    assert renames[1] == "renamed" and renames[0].startswith("refused: Another") and "final" in renames[0]
    from robust_core.store import ModelStore

    names = sorted(e.name for e in ModelStore(root).list())
    assert names[0] == "final" and names[1] in {"shared", "shared (2)"}


def test_a_model_saved_by_one_process_is_listed_and_its_deletion_seen_by_another(tmp_path):
    from robust_core.store import ModelStore

    root, out, go_delete = tmp_path / "store", tmp_path / "saved", tmp_path / "go-delete"
    store = ModelStore(root)
    assert store.list() == []
    child = _spawn("_child_save_then_delete", root=str(root), seed=7, go_delete=str(go_delete), out=str(out))
    _wait_for(out, child)
    model_id = out.read_text()
    [entry] = store.list()  # the same store object: no restart
    assert entry.model_id == model_id and entry.name == "from the other replica"
    model = store.load(model_id)
    assert sum(p.numel() for p in model.parameters()) > 0
    go_delete.touch()
    _wait_for(Path(f"{out}.deleted"), child)
    _finish(child)
    assert store.list() == []
    with pytest.raises(KeyError):
        store.load(model_id)  # not served from memory once another process deleted it


def test_an_evaluation_two_processes_ask_for_at_once_is_computed_once(tmp_path):
    from robust_core.evaluation import EvalKey, EvaluationCache
    from robust_core.store import ModelStore

    root, go, counter = tmp_path / "store", tmp_path / "go", tmp_path / "counter"
    store = ModelStore(root)
    model_id = store.save(_tiny_result(3), name="evaluated").model_id
    outs = [tmp_path / f"out{i}" for i in range(2)]
    children = [_spawn("_child_evaluate", root=str(root), model_id=model_id, go=str(go), counter=str(counter),
                       out=str(out)) for out in outs]
    for out in outs:
        _wait_for(Path(f"{out}.ready"), *children)
    go.touch()
    for child in children:
        _finish(child)
    computed_by = counter.read_text().split()
    assert len(computed_by) == 1, f"computed {len(computed_by)} times"
    first, second = (json.loads(out.read_text()) for out in outs)
    assert first == second and len(first) == 16
    key = EvalKey(model_id, "fgsm", (), 16, 0)
    assert [v if v != float("inf") else "inf" for v in EvaluationCache(store).get(key).tolist()] == first
    assert not list((root / ".locks").glob("*.lock"))  # the holder removed its lock file


def test_a_killed_holder_lets_the_waiting_process_compute(tmp_path):
    root, result = tmp_path / "store", tmp_path / "result"
    holder = _spawn("_child_compute", root=str(root), name="fake-key", marker=str(tmp_path / "holder"),
                    result=str(result), hold_s=120.0)
    _wait_for(tmp_path / "holder.computing", holder)
    waiter = _spawn("_child_compute", root=str(root), name="fake-key", marker=str(tmp_path / "waiter"),
                    result=str(result), hold_s=0.0)
    _wait_for(tmp_path / "waiter.waiting", waiter)
    time.sleep(0.3)
    assert waiter.poll() is None and not (tmp_path / "waiter.computing").exists()  # it waits for the holder
    killed = time.monotonic()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=WAIT_S)
    _finish(waiter)
    assert time.monotonic() - killed < 10.0
    assert (tmp_path / "waiter.computing").exists()
    assert result.read_text() == (tmp_path / "waiter.done").read_text() == str(waiter.pid)


def test_a_visitors_quota_counts_their_jobs_on_another_replica(tmp_path):
    from robust_core.jobs import JobRunner, QuotaExceeded
    from robust_core.room_ledger import RoomLedger

    root, ready = tmp_path / "store", tmp_path / "ready"
    other = _spawn("_child_visitor_jobs", root=str(root), ready=str(ready))
    try:
        _wait_for(ready, other)
        ledger = RoomLedger(root, replica_id="replica-b")
        runner = JobRunner(workers={"long": 1}, visitor_jobs=2, ledger=ledger)
        with pytest.raises(QuotaExceeded, match="already have 2 jobs"):
            runner.submit("b1", lambda ctx: "done", owner="v", lane="long", limited=True)
        assert runner.submit("b2", lambda ctx: "done", owner="w", lane="long", limited=True).wait(WAIT_S)
        # Without the ledger, this replica alone would have let "v" in: the refusal above is the shared count.
        assert JobRunner(workers={"long": 1}).submit("b1", lambda ctx: 1, owner="v", lane="long", limited=True)
        runner.pause_visitors("long")
        with pytest.raises(QuotaExceeded, match="paused"):
            JobRunner(workers={"long": 1}, ledger=ledger).submit("b3", lambda ctx: 1, owner="x", lane="long",
                                                               limited=True)
        runner.pause_visitors("long", False)
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait(timeout=WAIT_S)
    # The replica died: its jobs no longer count (its pid is gone), and "v" may submit here.
    job = runner.submit("b4", lambda ctx: "done", owner="v", lane="long", limited=True)
    assert job.wait(WAIT_S) and job.result == "done"
    assert not list((root / ".room" / "jobs").glob("*.json"))  # the finished job and the dead ones are gone
    ledger.close()


def test_a_silent_replica_on_another_host_stops_counting(tmp_path):
    from robust_core.room_ledger import RoomLedger

    ledger = RoomLedger(tmp_path, replica_id="here", heartbeat_s=0.1, stale_after_s=1.0)
    beat = ledger.folder / "replicas" / "elsewhere-1-x.json"
    beat.write_text(json.dumps({"replica": "elsewhere", "host": "another-host", "pid": 1}))
    record = {"ledger": "elsewhere-1-x", "lane": "long", "owners": ["v"], "queued": True, "visitor_only": True}
    (ledger.folder / "jobs" / "elsewhere-1-x-0.json").write_text(json.dumps(record))
    assert [r["owners"] for r in ledger.jobs("long")] == [["v"]]  # a fresh heartbeat of another host: live
    past = time.time() - 5.0
    os.utime(beat, (past, past))
    assert ledger.jobs("long") == []
    ledger.close()


def test_failed_key_attempts_count_for_the_whole_room_across_replicas(tmp_path):
    from robust_core.lecturer_key import LecturerKeyGuard
    from robust_core.room_ledger import RoomLedger

    root, out = tmp_path / "store", tmp_path / "verdicts"
    _finish(_spawn("_child_key_attempts", root=str(root), out=str(out)))
    assert json.loads(out.read_text()) == [True, "Wrong key.", "Wrong key.", "Wrong key."]
    guard = LecturerKeyGuard(visitor_failures=10, server_failures=3, min_interval_s=0,
                             ledger=RoomLedger(root, replica_id="replica-b"))
    environ = {"ROBUST_LECTURER_KEY": "correct horse"}
    verdict = guard.attempt("correct horse", visitor="forged-4", environ=environ)
    assert not verdict.accepted and verdict.message.startswith("Too many attempts") and verdict.retry_after_s > 0
    assert guard.is_lecturer("lecturer") and not guard.is_lecturer("forged-4")  # the lecturer stays it here too
    assert guard.attempt("correct horse", visitor="podium", from_server_machine=True, environ=environ).accepted
    # Without the ledger this replica had seen no failure: the refusal above is the room's count.
    alone = LecturerKeyGuard(visitor_failures=10, server_failures=3, min_interval_s=0)
    assert alone.attempt("guess", visitor="forged-4", environ=environ).message == "Wrong key."


def test_with_a_ledger_the_runner_keeps_its_quotas_and_frees_them_on_cancel(tmp_path, monkeypatch):
    import threading

    from robust_core.jobs import JobRunner, QuotaExceeded
    from robust_core.room_ledger import REPLICA_ENV, RoomLedger, replica_ledger

    release = threading.Event()
    ledger = RoomLedger(tmp_path, replica_id="solo")
    runner = JobRunner(workers={"long": 1}, visitor_jobs=2, visitors_queued=1, ledger=ledger)
    running = runner.submit("r", lambda ctx: release.wait(WAIT_S), owner="a", lane="long", limited=True)
    while runner.position(running) != 0:  # running, no longer waiting in the queue
        time.sleep(0.01)
    queued = runner.submit("q", lambda ctx: 1, owner="b", lane="long", limited=True)
    with pytest.raises(QuotaExceeded, match="1 visitors' jobs are waiting"):
        runner.submit("c", lambda ctx: 1, owner="c", lane="long", limited=True)
    assert runner.submit("q", lambda ctx: 1, owner="a", lane="long", limited=True) is queued  # joining counts for "a"
    with pytest.raises(QuotaExceeded, match="already have 2 jobs"):
        runner.submit("d", lambda ctx: 1, owner="a", lane="long", limited=True)
    assert runner.cancel(queued, "a") and runner.cancel(queued, "b")
    assert runner.submit("c", lambda ctx: 1, owner="c", lane="long", limited=True)  # the queue's place is free again
    release.set()
    assert running.wait(WAIT_S)
    ledger.close()
    monkeypatch.delenv(REPLICA_ENV, raising=False)
    assert replica_ledger(tmp_path) is None  # one server process: counts stay in memory, no files
