"""One bounded job runner for the heavy work of a server shared by a room (training, first-time attacks, fits).

    from robust_core.jobs import JobRunner
    runner = JobRunner(workers={"long": 1, "short": 1})
    job = runner.submit("train:12f5", train_fn, owner="session-a", label="Train CNN", lane="long")
    runner.position(job)    # 0 while it runs, k when k jobs are ahead of it, None once finished
    job.wait(); job.result  # or job.error, job.status

Why one runner: on 2 CPU cores, two trainings at once each run at half speed and a third makes every page
slow. Jobs therefore wait in one FIFO queue and ``workers`` (1-2 on CPU) run at a time, in threads of this
process (PyTorch releases the GIL in its kernels, and the models and data already in memory are shared).

- **De-duplication**: a job submitted under a key that is already queued or running is not run twice; the
  second requester joins it and gets the same result (the first-time attack curve several students ask for).
- **Cancellation** is per requester: a student cancels *their* request; the job stops only when nobody
  wants it any more (queued: removed at once; running: at its next progress report, see :class:`JobContext`).
- **Failures** stay in their job: the exception is kept as ``job.error`` and the worker takes the next job.
- **Quotas** (a lecture room, where every visitor is hostile): a submit with ``limited=True`` (a visitor, not the
  lecturer) is refused with :class:`QuotaExceeded` when that owner already has ``visitor_jobs`` jobs queued or
  running in the lane (joining an identical job counts too), when visitors' jobs already fill ``visitors_queued``
  places of the lane's queue (forged cookies are free: the cap holds whatever the number of visitors), or while
  the lane is paused for visitors (:meth:`JobRunner.pause_visitors`). The lecturer's submits pass, up to the
  lane's ``max_queued``, and the lecturer can stop any job (:meth:`JobRunner.cancel_all`).
  With a ``ledger`` (:class:`robust_core.room_ledger.RoomLedger`), the quotas and the pause count every replica
  sharing the store folder: a visitor who lands on another replica finds their jobs already counted there. The
  runner records each of its live jobs there (label, owners, lane, status, progress at most once a second, times),
  so the lecturer's room view on any replica lists them, and stops the ones a lecturer on another replica cancels
  (:meth:`robust_core.room_ledger.RoomLedger.request_cancel`) as its own lecturer's Cancel would.

- **Lanes**: each lane is its own FIFO queue with its own workers. A lecture server gives long jobs (training,
  first-time attack curves) one lane and short interactive ones (a morph: seconds) another, so that a student's
  2-second morph never waits behind a classmate's minute of training, while 30 simultaneous morphs still run
  one after the other (on 2 cores, 30 at once would each take 30 times longer: the median waits twice as long).

No Streamlit here: pages poll ``job.progress`` / ``runner.position(job)`` and render them.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)

# Jobs one visitor may have queued or running in one lane. Two: one running and the next waiting is all a student
# needs (train, then attack what was trained); more only lets one browser, or three tabs of it, hold a lane whose
# single worker the whole room shares.
VISITOR_JOBS_PER_LANE = 2
# Places of a lane's queue that all visitors' jobs together may fill. A job of the long lane takes minutes: ten
# waiting is already most of a lecture, and since a forged cookie is a new visitor, only a cap on visitors as a
# whole keeps the lane usable; the lecturer's jobs are not counted and may queue beyond it.
VISITORS_QUEUED_PER_LANE = 10
# Seconds between two writes of a running job's progress to the room's ledger: every write is a locked, fsynced file
# on a possibly shared filesystem, and a room view polling every 2 s needs no more.
LEDGER_PROGRESS_S = 1.0


class JobCancelled(Exception):
    """Raised inside a job's function (by :meth:`JobContext.progress` / :meth:`JobContext.check`) once nobody wants
    it."""


class QuotaExceeded(RuntimeError):
    """A visitor's submit refused by a quota of the runner (their own jobs, visitors' share of the lane, a pause);
    the message says what to do. A RuntimeError, as the refusal of a full queue is."""


@dataclass(eq=False)
class Job:
    key: str
    label: str
    fn: Callable[["JobContext"], Any]
    owners: list[str]
    number: int  # submission order
    lane: str = "default"
    status: str = QUEUED
    progress: float = 0.0  # 0..1, as the job last reported it
    message: str = ""
    details: dict = field(default_factory=dict)  # what the job's function shares while it runs (e.g. live curves)
    result: Any = None
    error: str | None = None  # "ExceptionType: message" of a failed job
    traceback: str | None = None
    limited_owners: set[str] = field(default_factory=set)  # requesters subject to the visitors' quotas
    cancelled_by: str | None = None  # who stopped it for everyone (:meth:`JobRunner.cancel_all`)
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished_ok(self) -> bool:
        return self.status == DONE

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is finished (done, failed or cancelled); False on timeout."""
        return self._done.wait(timeout)


class JobContext:
    """What a job's function receives: report progress, and learn that it was cancelled.

    ``progress(fraction, message)`` raises :class:`JobCancelled` when every requester has cancelled, so a
    function that reports progress regularly (as the training loop and the attacks do) stops there.
    """

    def __init__(self, runner: "JobRunner", job: Job):
        self._runner, self.job = runner, job

    @property
    def cancelled(self) -> bool:
        return self._runner._cancel_requested(self.job)

    def check(self) -> None:
        if self.cancelled:
            raise JobCancelled(f"{self.job.label} was cancelled")

    def progress(self, fraction: float, message: str = "") -> None:
        self.job.progress = float(min(max(fraction, 0.0), 1.0))
        if message:
            self.job.message = message
        self._runner._refresh_progress(self.job)
        self.check()


class JobRunner:
    """FIFO queues of jobs (one per lane) run by worker threads; at most ``keep_finished`` finished jobs are remembered.

    ``workers`` is a number of threads (one lane, ``"default"``) or ``{lane: threads}``. Thread-safe. Worker
    threads start on the first submit to their lane and are daemons (a server that stops does not wait for
    them). ``max_queued`` bounds each lane's queue: a submit beyond it raises ``RuntimeError`` (the page says
    the server is busy) rather than letting a room pile up hours of work. ``visitor_jobs`` and ``visitors_queued``
    are the visitors' quotas (see the module's docstring), for submits made with ``limited=True``; with a ``ledger``
    they are counted over every replica of the room (this runner records its live jobs in it, and stops those that a
    lecturer on another replica cancels through it).
    """

    def __init__(self, workers: int | dict[str, int] = 1, *, max_queued: int = 100, keep_finished: int = 200,
                 visitor_jobs: int = VISITOR_JOBS_PER_LANE, visitors_queued: int = VISITORS_QUEUED_PER_LANE,
                 ledger=None):
        lanes = {"default": workers} if isinstance(workers, int) else dict(workers)
        if not lanes or min(lanes.values()) < 1:
            raise ValueError("every lane needs at least one worker")
        self.lanes, self.max_queued, self.keep_finished = lanes, max_queued, keep_finished
        self.visitor_jobs, self.visitors_queued = visitor_jobs, visitors_queued
        self._paused: set[str] = set()  # lanes that refuse visitors' new jobs
        self.default_lane = next(iter(lanes))
        self._lock = threading.Condition()
        self._queues: dict[str, deque[Job]] = {lane: deque() for lane in lanes}
        self._active: dict[str, Job] = {}  # key -> queued or running job
        self._running: list[Job] = []
        self._finished: OrderedDict[str, Job] = OrderedDict()  # key -> last finished job of that key
        self._cancelled: set[int] = set()  # numbers of jobs nobody wants any more
        self._threads: dict[str, list[threading.Thread]] = {lane: [] for lane in lanes}
        self._numbers = itertools.count() if ledger is None else ledger.numbers  # a ledger's job files stay distinct
        self.ledger = ledger
        self._in_ledger: dict[int, float] = {}  # number -> when (monotonic) its ledger record was last written
        if ledger is not None:
            ledger.on_cancel_request(self._cancel_for_the_room)

    # ---- submitting and following -------------------------------------------------------------------
    def submit(self, key: str, fn: Callable[[JobContext], Any], *, owner: str, label: str | None = None,
               lane: str | None = None, limited: bool = False) -> Job:
        """Queue ``fn(context)`` under ``key`` in ``lane`` (default: the first lane), or join the queued/running job
        of that key (de-duplication).

        ``limited``: ``owner`` is a visitor of a lecture room, held to the quotas (:class:`QuotaExceeded`)."""
        lane = lane or self.default_lane
        if lane not in self.lanes:
            raise ValueError(f"unknown lane {lane!r}; this runner has {sorted(self.lanes)}")
        with self._lock, self._room(limited):
            job = self._active.get(key)
            if job is not None and job.number in self._cancelled:
                job = None  # still running until its next progress report, but it stops: a new request starts anew
            if job is not None:
                if owner not in job.owners:
                    if limited:  # joining takes a place of the visitor's quota too: it keeps the job alive
                        self._check_visitor_jobs(owner, job.lane)
                        job.limited_owners.add(owner)
                    job.owners.append(owner)
                    self._sync(job)
                return job
            queue = self._queues[lane]
            if limited:
                self._check_visitor_submit(owner, lane)
            if len(queue) >= self.max_queued:
                raise RuntimeError(f"the server is busy: {len(queue)} jobs are waiting; try again in a few minutes")
            job = Job(key=key, label=label or key, fn=fn, owners=[owner], number=next(self._numbers), lane=lane,
                      limited_owners={owner} if limited else set())
            queue.append(job)
            self._active[key] = job
            self._sync(job)
            self._start_workers(lane)
            self._lock.notify_all()
            return job

    def get(self, key: str) -> Job | None:
        """The queued or running job of ``key``, else the last finished one, else None."""
        with self._lock:
            return self._active.get(key) or self._finished.get(key)

    def position(self, job: Job) -> int | None:
        """0 while the job runs, k (1, 2, ...) when it is k-th in its lane's queue, None once finished."""
        with self._lock:
            if job.status == RUNNING:
                return 0
            if job.status != QUEUED:
                return None
            return next((i + 1 for i, j in enumerate(self._queues[job.lane]) if j is job), None)

    def jobs(self, owner: str | None = None) -> list[Job]:
        """Running then queued jobs (in order), optionally only those ``owner`` requested."""
        with self._lock:
            queued = [j for queue in self._queues.values() for j in queue]
            return [j for j in [*self._running, *queued] if owner is None or owner in j.owners]

    def cancel(self, job: Job, owner: str) -> bool:
        """Withdraw ``owner``'s request. The job itself stops once no requester is left: a queued job at once,
        a running one at its next progress report. Returns True if the owner had requested the job."""
        with self._lock:
            if owner not in job.owners or job.status in FINISHED:
                return False
            job.owners.remove(owner)
            if job.owners:
                self._sync(job)
                return True
            self._cancelled.add(job.number)
            self._sync(job)
            if job.status == QUEUED:
                self._queues[job.lane].remove(job)
                self._finish(job, CANCELLED, error="cancelled before it started")
            return True

    def cancel_all(self, job: Job, *, by: str = "the lecturer") -> bool:
        """Stop ``job`` for every requester (the lecturer's Cancel in the room view): a queued job at once, a running
        one at its next progress report; nothing of it is saved. Returns False when it had already finished."""
        with self._lock:
            if job.status in FINISHED:
                return False
            job.cancelled_by = by
            self._cancelled.add(job.number)
            self._sync(job)
            if job.status == QUEUED:
                self._queues[job.lane].remove(job)
                self._finish(job, CANCELLED, error=f"cancelled by {by}")
            return True

    # ---- quotas ----------------------------------------------------------------------------------
    def pause_visitors(self, lane: str, paused: bool = True) -> None:
        """Refuse (or accept again) visitors' new jobs in ``lane``; their queued and running jobs go on, the
        lecturer's submits are never refused by a pause."""
        if lane not in self.lanes:
            raise ValueError(f"unknown lane {lane!r}; this runner has {sorted(self.lanes)}")
        with self._lock:
            (self._paused.add if paused else self._paused.discard)(lane)
            if self.ledger is not None:
                self.ledger.set_paused(lane, paused)

    def visitors_paused(self, lane: str) -> bool:
        with self._lock:
            return self._is_paused(lane)

    def _is_paused(self, lane: str) -> bool:
        return lane in (self.ledger.paused_lanes() if self.ledger is not None else self._paused)

    # ---- the room's ledger (quotas over every replica) -------------------------------------------------------------
    def _room(self, limited: bool):
        """The ledger's lock for a visitor's submit (its checks and its record as one step for every replica)."""
        return self.ledger.locked() if limited and self.ledger is not None else contextlib.nullcontext()

    def _sync(self, job: Job) -> None:
        """Record ``job`` in the ledger, what the quotas count and what the room view shows (or remove it: finished,
        or cancelled for everyone). The lock is held."""
        if self.ledger is None:
            return
        try:
            if job.status in FINISHED or job.number in self._cancelled:
                if self._in_ledger.pop(job.number, None) is not None:
                    self.ledger.drop_job(job.number)
                return
            now, wall = time.monotonic(), time.time()
            self._in_ledger[job.number] = now  # also when the write fails: the progress refresh retries a second later
            self.ledger.put_job(
                job.number, lane=job.lane, owners=list(job.owners), queued=job.status == QUEUED,
                visitor_only=set(job.owners) <= job.limited_owners, label=job.label[:500],
                visitors=[o for o in job.owners if o in job.limited_owners], status=job.status,
                progress=round(job.progress, 4), queued_at=wall - (now - job.submitted),
                started_at=None if job.started is None else wall - (now - job.started))
        except OSError:
            pass  # the store is unreachable for now (a worker must not die of it); the ledger's checks then fail loudly

    def _refresh_progress(self, job: Job) -> None:
        """Write a running job's progress to the ledger, at most every LEDGER_PROGRESS_S (called at each report)."""
        if self.ledger is None or time.monotonic() - self._in_ledger.get(job.number, 0.0) < LEDGER_PROGRESS_S:
            return
        with self._lock:
            if job.status == RUNNING:
                self._sync(job)

    def _cancel_for_the_room(self, number: int, by: str) -> bool:
        """A lecturer's cancel request from another replica, through the ledger (its heartbeat's thread)."""
        job = next((j for j in self.jobs() if j.number == number), None)
        return job is not None and self.cancel_all(job, by=by)

    def _live(self, lane: str) -> list[Job]:
        """Queued and running jobs of ``lane`` that someone still wants (the lock is held)."""
        return [j for j in [*self._running, *self._queues[lane]] if j.lane == lane and j.number not in self._cancelled]

    def _check_visitor_jobs(self, owner: str, lane: str) -> None:
        if self.ledger is not None:
            mine = sum(owner in record.get("owners", ()) for record in self.ledger.jobs(lane))
        else:
            mine = sum(owner in j.owners for j in self._live(lane))
        if mine >= self.visitor_jobs:
            raise QuotaExceeded(f"You already have {mine} jobs of this kind waiting or running: cancel one or wait for "
                                f"it to finish (a visitor of the lecture may have {self.visitor_jobs} at a time).")

    def _check_visitor_submit(self, owner: str, lane: str) -> None:
        """Refuse a visitor's new job in ``lane`` (QuotaExceeded) when a quota says so (the lock is held)."""
        if self._is_paused(lane):
            raise QuotaExceeded("The lecturer has paused visitors' new jobs of this kind for now: try again later.")
        self._check_visitor_jobs(owner, lane)
        if self.ledger is not None:
            waiting = sum(bool(r.get("queued") and r.get("visitor_only")) for r in self.ledger.jobs(lane))
        else:
            waiting = sum(set(j.owners) <= j.limited_owners for j in self._queues[lane]
                          if j.number not in self._cancelled)
        if waiting >= self.visitors_queued:
            raise QuotaExceeded(f"The server is busy: {waiting} visitors' jobs are waiting already. Try again in a few "
                                "minutes.")

    # ---- workers ---------------------------------------------------------------------------------
    def _cancel_requested(self, job: Job) -> bool:
        with self._lock:
            return job.number in self._cancelled

    def _start_workers(self, lane: str) -> None:
        threads = self._threads[lane] = [t for t in self._threads[lane] if t.is_alive()]
        while len(threads) < self.lanes[lane]:
            thread = threading.Thread(target=self._work, args=(lane,), name=f"robust-lab-{lane}-{len(threads)}",
                                      daemon=True)
            threads.append(thread)
            thread.start()

    def _work(self, lane: str) -> None:
        queue = self._queues[lane]
        while True:
            with self._lock:
                while not queue:
                    self._lock.wait()
                job = queue.popleft()
                job.status, job.started = RUNNING, time.monotonic()
                self._running.append(job)
                self._sync(job)
            try:
                result = job.fn(JobContext(self, job))
            except JobCancelled as exc:
                with self._lock:
                    self._finish(job, CANCELLED,
                                 error=f"cancelled by {job.cancelled_by}" if job.cancelled_by else str(exc))
            except BaseException as exc:  # a failing job must never take its worker down
                with self._lock:
                    self._finish(job, FAILED, error=f"{type(exc).__name__}: {exc}", tb=traceback.format_exc())
            else:
                with self._lock:
                    if job.number in self._cancelled:  # finished before it noticed: nobody wants the result
                        self._finish(job, CANCELLED, error=f"cancelled by {job.cancelled_by}" if job.cancelled_by
                                     else f"{job.label} was cancelled")
                    else:
                        job.result, job.progress = result, 1.0
                        self._finish(job, DONE)

    def _finish(self, job: Job, status: str, *, error: str | None = None, tb: str | None = None) -> None:
        """Record the end of ``job`` (the lock is held)."""
        job.status, job.error, job.traceback, job.finished = status, error, tb, time.monotonic()
        if job in self._running:
            self._running.remove(job)
        if self._active.get(job.key) is job:
            del self._active[job.key]
        self._sync(job)
        self._cancelled.discard(job.number)
        self._finished[job.key] = job
        self._finished.move_to_end(job.key)
        while len(self._finished) > self.keep_finished:
            self._finished.popitem(last=False)
        job._done.set()


__all__ = ["CANCELLED", "DONE", "FAILED", "Job", "JobCancelled", "JobContext", "JobRunner", "LEDGER_PROGRESS_S",
           "QUEUED", "QuotaExceeded", "RUNNING", "VISITORS_QUEUED_PER_LANE", "VISITOR_JOBS_PER_LANE"]
