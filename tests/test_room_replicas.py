"""The lecturer's room view across replicas: every replica's jobs in the room's ledger, and a Cancel that reaches the
replica running the job.

The two-process test follows tests/test_cross_process.py: the other replica is a separate Python process running
``_child_replica``, and parent and child meet through marker files (conditions polled with a deadline, never a bare
sleep). Short heartbeats keep each hand-over a fraction of a second.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.test_cross_process import WAIT_S, _finish, _wait_file, _wait_for

HEARTBEAT_S, STALE_AFTER_S = 0.1, 5.0
HOSTILE_LABEL = "Train ![t](http://127.0.0.1:8699/track.png) **bold** for v1"
VISITOR = "0123456789abcdef0123"  # a visitor's public id, as robust_core.access.visitor_id makes them


def _spawn(function: str, **kwargs):
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    code = f"import json, sys; from tests.test_room_replicas import {function} as f; f(**json.loads(sys.argv[1]))"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(kwargs)], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _until_cancelled(ctx):
    while True:
        ctx.progress(0.5, "halfway")
        time.sleep(0.02)


def _eventually(condition, what: str, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > end:
            pytest.fail(f"{what} within {timeout:g} s")
        time.sleep(0.02)
    return value


# ---- the other replica --------------------------------------------------------------------------------------------
def _child_replica(root: str, ready: str, out: str, leave: str) -> None:
    """Replica B: a finished job, a visitor's running job and the lecturer's queued one (a visitor joined it), the
    last two until cancelled; writes how they ended, then waits for ``leave``."""
    from robust_core.jobs import JobRunner
    from robust_core.room_ledger import RoomLedger

    ledger = RoomLedger(root, replica_id="replica-b", heartbeat_s=HEARTBEAT_S, stale_after_s=STALE_AFTER_S)
    runner = JobRunner(workers={"long": 1, "short": 1}, ledger=ledger)
    quick = runner.submit("quick", lambda ctx: "done", owner="lecturer-b", label="quick", lane="short")
    assert quick.wait(WAIT_S)
    running = runner.submit("train", _until_cancelled, owner="visitor-1", label=HOSTILE_LABEL, lane="long",
                            limited=True)
    queued = runner.submit("attack", _until_cancelled, owner="lecturer-b", label="Attack", lane="long")
    assert runner.submit("attack", _until_cancelled, owner="visitor-2", lane="long", limited=True) is queued
    while runner.position(running) != 0:
        time.sleep(0.01)
    Path(ready).write_text(json.dumps({"ledger": ledger.name, "quick": quick.number, "running": running.number,
                                       "queued": queued.number}))
    for job in (running, queued):
        assert job.wait(WAIT_S)
    Path(out).write_text(json.dumps({"ended": [[job.status, job.error] for job in (running, queued)],
                                     "quick": [quick.status, quick.result]}))
    _wait_file(leave)
    ledger.close()


# ---- the tests ----------------------------------------------------------------------------------------------------
def test_another_replica_s_jobs_are_listed_and_the_lecturer_here_cancels_them_there(tmp_path):
    from robust_core.room_ledger import RoomLedger

    root, ready, out, leave = tmp_path / "store", tmp_path / "ready", tmp_path / "out", tmp_path / "leave"
    other = _spawn("_child_replica", root=str(root), ready=str(ready), out=str(out), leave=str(leave))
    ledger = None
    try:
        _wait_for(ready, other)
        numbers = json.loads(ready.read_text())
        ledger = RoomLedger(root, replica_id="replica-a", heartbeat_s=HEARTBEAT_S, stale_after_s=STALE_AFTER_S)
        listed = {r["number"]: r for r in ledger.jobs() if r["replica"] == "replica-b"}
        assert sorted(listed) == sorted([numbers["running"], numbers["queued"]])  # the finished one is gone
        running, queued = listed[numbers["running"]], listed[numbers["queued"]]
        assert (running["label"], running["lane"], running["status"]) == (HOSTILE_LABEL, "long", "running")
        assert running["owners"] == running["visitors"] == ["visitor-1"]
        assert running["queued_at"] <= running["started_at"] <= time.time()
        assert (queued["label"], queued["status"], queued["started_at"]) == ("Attack", "queued", None)
        assert queued["owners"] == ["lecturer-b", "visitor-2"] and queued["visitors"] == ["visitor-2"]
        # The running job's progress arrives too (refreshed at most once a second).
        _eventually(lambda: [r for r in ledger.jobs() if r["number"] == numbers["running"]
                             and r["progress"] == 0.5], "the running job's progress did not reach the ledger")

        # A request for a job that has finished is not written; one left over from a race is dropped by replica B.
        finished = f"{numbers['ledger']}-{numbers['quick']}.json"
        assert not ledger.request_cancel(finished) and finished not in ledger.cancel_requests()
        leftover = ledger.folder / "cancel" / finished
        leftover.write_text(json.dumps({"by": "the lecturer"}))
        _eventually(lambda: not leftover.exists(), "replica B did not drop the request for its finished job")
        assert {r["status"] for r in ledger.jobs() if r["replica"] == "replica-b"} == {"running", "queued"}

        asked = time.monotonic()
        assert ledger.request_cancel(running["file"]) and ledger.request_cancel(queued["file"].removesuffix(".json"))
        _wait_for(out, other)
        assert time.monotonic() - asked < 5.0  # a few heartbeats of replica B, not a wait for its jobs to end
        ended = json.loads(out.read_text())
        assert ended["ended"] == [["cancelled", "cancelled by the lecturer"]] * 2
        assert ended["quick"] == ["done", "done"]
        _eventually(lambda: not ledger.cancel_requests(), "replica B did not remove the cancel requests")
        assert not [r for r in ledger.jobs() if r["replica"] == "replica-b"]
        leave.touch()
        _finish(other)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait(timeout=WAIT_S)
        if ledger is not None:
            ledger.close()
    assert not list((root / ".room" / "jobs").glob("*.json"))


def test_a_running_job_s_progress_is_written_to_the_ledger_at_most_about_once_a_second(tmp_path):
    from robust_core.jobs import LEDGER_PROGRESS_S, JobRunner
    from robust_core.room_ledger import RoomLedger

    ledger = RoomLedger(tmp_path, replica_id="solo", heartbeat_s=HEARTBEAT_S, stale_after_s=STALE_AFTER_S)
    writes, put = [], ledger.put_job
    ledger.put_job = lambda number, **fields: (writes.append(fields["progress"]), put(number, **fields))

    def reports(ctx):
        end = time.monotonic() + 1.5 * LEDGER_PROGRESS_S
        while (now := time.monotonic()) < end:
            ctx.progress(1 - (end - now) / (1.5 * LEDGER_PROGRESS_S))
            time.sleep(0.002)
        return "done"

    job = JobRunner(workers=1, ledger=ledger).submit("k", reports, owner="lecturer")
    assert job.wait(WAIT_S) and job.result == "done"
    # Hundreds of reports: the submit's record, the start's, and one or two refreshes with the progress then reached.
    assert 3 <= len(writes) <= 4 and writes[:2] == [0.0, 0.0] and writes[-1] > 0.5
    assert not list((ledger.folder / "jobs").glob("*.json"))
    ledger.close()


def _room_script() -> None:
    from lab_pages._room import room_view

    room_view()


def test_the_lecturers_room_view_lists_every_replica_s_jobs_and_cancels_another_replica_s_through_the_ledger(
        tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    import lab_pages._room as room
    from robust_core.jobs import JobRunner
    from robust_core.room_ledger import RoomLedger

    # Two replicas in this process; B's heartbeat is slow, so that its pick-up of the request is this test's call.
    ledger_a = RoomLedger(tmp_path, replica_id="replica-a", heartbeat_s=HEARTBEAT_S, stale_after_s=STALE_AFTER_S)
    ledger_b = RoomLedger(tmp_path, replica_id="replica-b", heartbeat_s=60.0, stale_after_s=120.0)
    here, there = JobRunner(workers={"long": 1}, ledger=ledger_a), JobRunner(workers={"long": 1}, ledger=ledger_b)
    release = threading.Event()
    mine = here.submit("here", lambda ctx: release.wait(WAIT_S), owner="lecturer-a", label="local job", lane="long")
    remote = there.submit("there", _until_cancelled, owner=VISITOR, label=HOSTILE_LABEL, lane="long", limited=True)
    waiting = there.submit("there-2", _until_cancelled, owner="lecturer-b", label="second", lane="long")
    try:
        monkeypatch.setattr(room, "job_runner", lambda: here)
        monkeypatch.setenv("ROBUST_LECTURE_MODE", "1")
        visitor = AppTest.from_function(_room_script, default_timeout=60)
        visitor.session_state["_owner_token"] = "1" * 32
        visitor.run()
        assert not visitor.exception and not visitor.text and not visitor.toggle  # the room is the lecturer's

        at = AppTest.from_function(_room_script, default_timeout=60)
        at.session_state["_owner_token"], at.session_state["_lecturer"] = "2" * 32, True
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        texts = [t.value for t in at.text]
        assert texts.count("local job") == 1 and "replica-a (this one)" in texts  # listed once, from the runner
        assert HOSTILE_LABEL in texts and "second" in texts and "replica-b" in texts  # plain text, as typed
        assert f"visitor {VISITOR[:6]}" in texts and any(t.startswith("queued, #1, ") for t in texts)
        file = next(r["file"] for r in ledger_a.jobs() if r["number"] == remote.number and r["replica"] == "replica-b")

        at.button(key=f"room_cancel_{file}").click().run()
        assert "cancel requested on replica replica-b" in [t.value for t in at.text]
        assert at.button(key=f"room_cancel_{file}").disabled and remote.status == "running"
        assert ledger_b.take_cancel_requests() == 1  # what B's heartbeat does
        assert remote.wait(WAIT_S) and remote.error == "cancelled by the lecturer" and not ledger_b.cancel_requests()
        at.run()
        texts = [t.value for t in at.text]
        assert HOSTILE_LABEL not in texts and "local job" in texts and "second" in texts
        assert mine.status == "running" and waiting.status in ("queued", "running")
    finally:
        release.set()
        there.cancel_all(waiting, by="the test")
        for job in (mine, remote, waiting):
            job.wait(WAIT_S)
        ledger_a.close()
        ledger_b.close()
