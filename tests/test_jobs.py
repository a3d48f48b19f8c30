"""The job runner: FIFO order, de-duplication, cancellation per requester, failures kept in their job."""
import threading
import time

import pytest

from robust_core.jobs import CANCELLED, DONE, FAILED, JobCancelled, JobRunner


def gate():
    """A job function that waits until released (so tests decide when the running job ends)."""
    release = threading.Event()

    def fn(ctx):
        while not release.wait(0.01):
            ctx.progress(0.5, "waiting")
        return "released"

    return fn, release


def test_jobs_run_one_at_a_time_in_submission_order_and_report_queue_positions():
    runner = JobRunner(workers=1)
    order = []
    blocker, release = gate()
    first = runner.submit("block", blocker, owner="a")
    jobs = [runner.submit(f"job{i}", lambda ctx, i=i: order.append(i) or i, owner="b") for i in range(4)]
    deadline = time.monotonic() + 5
    while runner.position(first) != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.position(first) == 0 and [runner.position(j) for j in jobs] == [1, 2, 3, 4]
    assert [j.key for j in runner.jobs(owner="b")] == ["job0", "job1", "job2", "job3"]
    release.set()
    assert all(j.wait(5) for j in jobs)
    assert order == [0, 1, 2, 3] and [j.result for j in jobs] == [0, 1, 2, 3]
    assert first.result == "released" and first.status == DONE and runner.position(first) is None


def test_identical_requests_run_once_and_every_requester_gets_the_result():
    runner = JobRunner(workers=1)
    calls = []
    blocker, release = gate()
    runner.submit("block", blocker, owner="lecturer")
    a = runner.submit("curve:pgd", lambda ctx: calls.append(1) or "curve", owner="student-1")
    b = runner.submit("curve:pgd", lambda ctx: calls.append(2) or "other", owner="student-2")
    assert a is b and a.owners == ["student-1", "student-2"]
    release.set()
    assert a.wait(5) and calls == [1] and b.result == "curve"
    assert runner.get("curve:pgd") is a  # the finished job stays to be read


def test_cancelling_is_per_requester_and_stops_a_running_job_at_its_next_progress_report():
    runner = JobRunner(workers=1)
    running_fn, release = gate()
    running = runner.submit("long", running_fn, owner="a")
    running = runner.submit("long", running_fn, owner="b")
    queued = runner.submit("next", lambda ctx: "ran", owner="c")
    while runner.position(running) != 0:
        time.sleep(0.01)
    # One of two requesters withdraws: the job goes on for the other. A stranger cannot cancel it.
    assert runner.cancel(running, "a") and not runner.cancel(running, "mallory")
    time.sleep(0.05)
    assert running.status == "running"
    assert runner.cancel(queued, "c") and queued.status == CANCELLED and queued.wait(0)
    assert runner.cancel(running, "b")
    assert running.wait(5) and running.status == CANCELLED and "cancelled" in running.error
    release.set()
    after = runner.submit("after", lambda ctx: "fine", owner="d")
    assert after.wait(5) and after.result == "fine"


def test_a_failing_job_reports_its_error_and_the_others_still_run():
    runner = JobRunner(workers=2)

    def diverges(ctx):
        raise FloatingPointError("loss is NaN at batch 3")

    bad = runner.submit("bad", diverges, owner="a")
    good = [runner.submit(f"ok{i}", lambda ctx, i=i: i * i, owner="b") for i in range(5)]
    assert bad.wait(5) and all(j.wait(5) for j in good)
    assert (bad.status == FAILED and bad.error == "FloatingPointError: loss is NaN at batch 3"
            and "diverges" in bad.traceback)
    assert [j.result for j in good] == [0, 1, 4, 9, 16]
    # The key can be submitted again after a failure (a fresh job, not the failed one).
    retry = runner.submit("bad", lambda ctx: "second try", owner="a")
    assert retry is not bad and retry.wait(5) and retry.result == "second try"


def test_the_queue_is_bounded_and_the_context_raises_once_cancelled():
    runner = JobRunner(workers=1, max_queued=2)
    blocker, release = gate()
    runner.submit("block", blocker, owner="a")
    while runner.jobs()[0].status != "running":
        time.sleep(0.01)
    runner.submit("q1", lambda ctx: 1, owner="a")
    q2 = runner.submit("q2", lambda ctx: 2, owner="a")
    with pytest.raises(RuntimeError, match="busy"):
        runner.submit("q3", lambda ctx: 3, owner="a")
    release.set()
    assert q2.wait(5)
    seen = []

    def stops_itself(ctx):
        runner.cancel(ctx.job, "me")
        seen.append(ctx.cancelled)
        ctx.check()
        return "never"

    job = runner.submit("self", stops_itself, owner="me")
    assert job.wait(5) and job.status == CANCELLED and seen == [True]
    with pytest.raises(ValueError):
        JobRunner(workers=0)
    assert issubclass(JobCancelled, Exception)


def test_a_short_job_in_its_own_lane_does_not_wait_behind_a_long_one_and_lanes_keep_fifo_order():
    runner = JobRunner(workers={"long": 1, "short": 1})
    blocker, release = gate()
    training = runner.submit("train", blocker, owner="a", lane="long")
    queued_training = runner.submit("train2", lambda ctx: "t2", owner="b", lane="long")
    morphs = [runner.submit(f"morph{i}", lambda ctx, i=i: i, owner=f"s{i}", lane="short") for i in range(3)]
    # The morphs finish while the long lane is still blocked; the second training is still first in its queue.
    assert all(m.wait(5) for m in morphs) and [m.result for m in morphs] == [0, 1, 2]
    deadline = time.monotonic() + 5  # the long lane's worker thread may not have been scheduled yet on a busy machine
    while runner.position(training) != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.position(training) == 0 and runner.position(queued_training) == 1
    assert queued_training.lane == "long" and morphs[0].lane == "short"
    release.set()
    assert queued_training.wait(5) and queued_training.result == "t2"
    with pytest.raises(ValueError, match="unknown lane"):
        runner.submit("x", lambda ctx: 0, owner="a", lane="gpu")


def test_a_training_job_shares_live_curves_and_a_cancelled_or_diverging_one_leaves_the_store_untouched(
        mnist, isolated_store, monkeypatch):
    from robust_core.store import ModelStore
    from robust_core.training import TRAINING_METHODS, BatchLoss, TrainConfig

    store = ModelStore(isolated_store)
    runner = JobRunner(workers={"long": 1, "short": 1})
    config = TrainConfig(train_subset=500, epochs=1, batch_size=50, seed=4)
    done = runner.submit("train:a",
                         store.training_job(config, name="queued one", data=mnist, extra_meta={"owner": "s1"}),
                         owner="s1", lane="long")
    assert done.wait(60) and done.status == DONE, done.error
    assert done.result.name == "queued one" and done.result.meta["owner"] == "s1"
    live = done.details["live"]
    assert len(live["batches"]) == 10 and live["epoch"] == [1] and done.details["last"]["batch"] == 10

    # Cancelled once it has started: it stops at its next progress report and nothing is saved.
    bigger = TrainConfig(train_subset=2000, epochs=2, batch_size=50, seed=5)
    job = runner.submit("train:b", store.training_job(bigger, data=mnist), owner="s2", lane="long")
    while job.details.get("last") is None and not job.wait(0.01):
        pass
    assert runner.cancel(job, "s2") and job.wait(60) and job.status == CANCELLED
    assert bigger.config_hash() not in store

    # A NaN loss fails the job with the training loop's explanation; the store still holds only the first model.
    def nan_loss(model, x, y, ctx):
        logits = model(x)
        return BatchLoss(logits.sum() * float("nan"), logits)

    monkeypatch.setitem(TRAINING_METHODS, "nan_for_test", nan_loss)
    diverging = runner.submit("train:c",
                              store.training_job(TrainConfig(method="nan_for_test", train_subset=100, epochs=1),
                                                 data=mnist),
                              owner="s3", lane="long")
    assert diverging.wait(60) and diverging.status == FAILED and "FloatingPointError" in diverging.error
    assert [e.name for e in store.list()] == ["queued one"]
