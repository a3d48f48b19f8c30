"""A lecture room's shared counts, for dashboard replicas that share one store folder (``<store>/.room/``).

Each replica (a separate Streamlit process, possibly on another host) has its own job runner and its own lecturer-key
guard; a visitor who drops the proxy's affinity cookie lands on another replica, and would find a fresh quota there.
Given a :class:`RoomLedger`, :class:`robust_core.jobs.JobRunner` and :class:`robust_core.lecturer_key.LecturerKeyGuard`
count in it instead, so every replica sees the whole room:

    <store>/.room/
        .lock                       the ledger's lock (robust_core.file_locks.FolderLock): every check and the
                                    change it allows happen as one step for all replicas
        replicas/<ledger>.json      one per running ledger (host, pid, replica id); its mtime is its heartbeat
        jobs/<ledger>-<n>.json      one per live job of every replica: label, owners (and which are visitors), lane,
                                    status, progress, queued and started times (the quotas count the visitors', the
                                    lecturer's room view lists them all)
        cancel/<ledger>-<n>.json    the lecturer's request to stop that job, from any replica: the replica running it
                                    cancels it at its next heartbeat and removes the request
        paused.json                 the lanes paused for visitors (by the lecturer, on any replica)
        lecturer_key.json           failed key attempts (timestamps), last tries, the lecturer browsers

A replica that dies leaves its files behind; they are ignored (and removed by the next replica that counts) once its
pid is gone (same host) or its heartbeat is older than ``stale_after_s`` (any host: its mtime is compared with this
ledger's own heartbeat's, both set by the file server's clock, so hosts' clocks need not agree). Every file is written
whole (temporary file, fsync, rename). Times in the job files are wall-clock seconds of the replica that wrote them.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .file_locks import FolderLock, atomic_write_text

ROOM_DIR = ".room"
REPLICA_ENV = "ROBUST_REPLICA_ID"
HEARTBEAT_S = 5.0
STALE_AFTER_S = 30.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


# A job file's name: the ledger's name (letters, digits, "_", ".", "-"), "-", the job's number, ".json".
_JOB_FILE = re.compile(r"[A-Za-z0-9_.-]+-[0-9]+\.json")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # removed meanwhile, or not one of ours: ignored


class RoomLedger:
    """The shared counts of the room whose store folder is ``store_root`` (see the module's docstring).

    ``replica_id``: this replica's name in the files (default ``$ROBUST_REPLICA_ID``, else host:pid). A daemon
    thread renews the heartbeat every ``heartbeat_s`` and hands the cancel requests addressed to this ledger's jobs to
    the handlers registered with :meth:`on_cancel_request`; :meth:`close` stops it and removes this ledger's files."""

    def __init__(self, store_root: str | os.PathLike, *, replica_id: str | None = None,
                 heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S, lock_timeout_s: float = 10.0):
        if heartbeat_s <= 0 or stale_after_s <= heartbeat_s:
            raise ValueError("the heartbeat needs a positive period, shorter than the time after which it is stale")
        self.folder = Path(store_root).expanduser() / ROOM_DIR
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.replica_id = replica_id or os.environ.get(REPLICA_ENV) or f"{self.host}:{self.pid}"
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.replica_id)[:60]
        self.name = f"{safe}-{self.pid}-{uuid.uuid4().hex[:8]}"  # unique even for two ledgers of one process
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self._lock = FolderLock(self.folder, timeout=lock_timeout_s)
        self._states: dict[str, tuple[tuple, Any]] = {}
        # Job numbers, unique over every runner recording in this ledger (each number names one job file).
        self.numbers = itertools.count()
        self._cancel_handlers: list[Callable[[int, str], bool]] = []
        self._own_request = re.compile(re.escape(self.name) + r"-([0-9]+)\.json")
        for sub in ("replicas", "jobs", "cancel"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        self.beat()
        self._thread = threading.Thread(target=self._beat_loop, name="robust-lab-room-heartbeat", daemon=True)
        self._thread.start()

    # ---- liveness ------------------------------------------------------------------------------------------------
    def locked(self) -> FolderLock:
        """The ledger's lock, re-entrant within a thread: hold it across a check and the change it allows."""
        return self._lock

    def _beat_path(self, name: str) -> Path:
        return self.folder / "replicas" / f"{name}.json"

    def beat(self) -> None:
        """Renew this ledger's heartbeat (its file's mtime)."""
        path = self._beat_path(self.name)
        try:
            os.utime(path)
        except FileNotFoundError:
            atomic_write_text(path, json.dumps({"replica": self.replica_id, "host": self.host, "pid": self.pid}))

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.beat()
                self.take_cancel_requests()
            except Exception:
                pass  # the store unreachable for now, a handler failing: the heartbeat lives on, the next one retries

    def _live_ledgers(self) -> set[str]:
        """Names of the ledgers whose heartbeat is fresh and whose process (on this host) is alive; the others' files
        are removed. The caller holds the lock."""
        self.beat()
        now = self._beat_path(self.name).stat().st_mtime  # the file server's clock
        live = set()
        for path in (self.folder / "replicas").glob("*.json"):
            info = _read_json(path)
            try:
                fresh = now - path.stat().st_mtime <= self.stale_after_s
            except FileNotFoundError:
                continue
            if path.stem == self.name or (isinstance(info, dict) and fresh and (
                    info.get("host") != self.host or _pid_alive(int(info.get("pid", -1))))):
                live.add(path.stem)
            else:
                path.unlink(missing_ok=True)
        return live

    # ---- jobs ----------------------------------------------------------------------------------------------------
    def put_job(self, number: int, **fields: Any) -> None:
        """Record (or update) this replica's live job ``number`` with its ``fields`` (owners, lane, ...)."""
        with self._lock:
            record = {**fields, "number": number, "ledger": self.name, "replica": self.replica_id, "host": self.host,
                      "pid": self.pid}
            atomic_write_text(self.folder / "jobs" / f"{self.name}-{number}.json", json.dumps(record))

    def drop_job(self, number: int) -> None:
        with self._lock:
            (self.folder / "jobs" / f"{self.name}-{number}.json").unlink(missing_ok=True)

    def jobs(self, lane: str | None = None) -> list[dict]:
        """Every live replica's recorded jobs (of ``lane``), each with its job file's name as ``"file"``; those of dead
        or silent replicas are removed, and so are cancel requests left for jobs that no longer exist."""
        with self._lock:
            live, found, names = self._live_ledgers(), [], set()
            for path in (self.folder / "jobs").glob("*.json"):
                record = _read_json(path)
                if not isinstance(record, dict) or record.get("ledger") not in live:
                    path.unlink(missing_ok=True)
                    continue
                names.add(path.name)
                if lane is None or record.get("lane") == lane:
                    found.append({**record, "file": path.name})
            for path in (self.folder / "cancel").glob("*.json"):
                if path.name not in names:
                    path.unlink(missing_ok=True)
            return found

    # ---- the lecturer's Cancel, across replicas ------------------------------------------------------------------
    def request_cancel(self, job_file_name: str, *, by: str = "the lecturer") -> bool:
        """Ask the replica running the job of ``job_file_name`` (a record's ``"file"``, see :meth:`jobs`) to stop it for
        every requester, as :meth:`robust_core.jobs.JobRunner.cancel_all` ``(job, by=by)`` there; it does so at its
        next heartbeat. False when that job has finished already (nothing is requested)."""
        name = str(job_file_name)
        name = name if name.endswith(".json") else f"{name}.json"
        if not _JOB_FILE.fullmatch(name):
            raise ValueError(f"not the name of a job file of the room: {job_file_name!r}")
        with self._lock:
            if not (self.folder / "jobs" / name).exists():
                return False
            request = {"by": str(by)[:200], "from": self.replica_id}
            atomic_write_text(self.folder / "cancel" / name, json.dumps(request))
            return True

    def cancel_requests(self) -> set[str]:
        """The job files' names (as in :meth:`jobs`) whose jobs a cancel request waits for."""
        return {path.name for path in (self.folder / "cancel").glob("*.json")}

    def on_cancel_request(self, handler: Callable[[int, str], bool]) -> None:
        """Have ``handler(number, by)`` called (in the heartbeat's thread) for each cancel request addressed to this
        ledger's job ``number``; it returns whether it had that job. A job runner registers itself here."""
        self._cancel_handlers.append(handler)

    def take_cancel_requests(self) -> int:
        """Hand every cancel request addressed to this ledger's jobs to the handlers, then remove it (also when no
        handler had the job: it has finished). Returns the number of jobs a handler stopped. The heartbeat calls it;
        the ledger's lock is not held meanwhile (a handler takes its runner's lock, which is taken before this one)."""
        stopped = 0
        for path in (self.folder / "cancel").glob(f"{self.name}-*.json"):
            match = self._own_request.fullmatch(path.name)
            if match is None:
                continue  # another ledger's, whose name starts like this one's
            request = _read_json(path)
            by = request.get("by") if isinstance(request, dict) else None
            by = by if isinstance(by, str) and by else "the lecturer"
            try:
                stopped += any([handler(int(match.group(1)), by) for handler in list(self._cancel_handlers)])
            finally:
                path.unlink(missing_ok=True)
        return stopped

    # ---- small shared states (paused lanes, the key guard's counts) ---------------------------------------------
    def read_state(self, name: str, default: Any = None) -> Any:
        """The state ``name`` as last written (re-read only when its file changed)."""
        path = self.folder / f"{name}.json"
        try:
            st = path.stat()
        except FileNotFoundError:
            return default
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._states.get(name)
        if cached is None or cached[0] != signature:
            value = _read_json(path)
            cached = (signature, default if value is None else value)
            self._states[name] = cached
        return cached[1]

    def update_state(self, name: str, change: Callable[[Any], Any], default: Any = None) -> Any:
        """Replace the state ``name`` by ``change(current)`` as one step for every replica; returns the new state."""
        with self._lock:
            value = change(self.read_state(name, default))
            atomic_write_text(self.folder / f"{name}.json", json.dumps(value))
            return value

    def paused_lanes(self) -> set[str]:
        value = self.read_state("paused", [])
        return {lane for lane in value if isinstance(lane, str)} if isinstance(value, list) else set()

    def set_paused(self, lane: str, paused: bool) -> None:
        def change(current):
            lanes = set(current) if isinstance(current, list) else set()
            (lanes.add if paused else lanes.discard)(lane)
            return sorted(lanes)
        self.update_state("paused", change, [])

    def close(self) -> None:
        """Stop the heartbeat and remove this ledger's files (its jobs no longer count)."""
        self._stop.set()
        with self._lock:
            for sub in ("jobs", "cancel"):
                for path in (self.folder / sub).glob(f"{self.name}-*.json"):
                    path.unlink(missing_ok=True)
            self._beat_path(self.name).unlink(missing_ok=True)


_ledgers: dict[Path, RoomLedger] = {}
_ledgers_lock = threading.Lock()


def replica_ledger(store_root: str | os.PathLike) -> RoomLedger | None:
    """This process's ledger of the room at ``store_root`` when it runs as one of several replicas
    (``$ROBUST_REPLICA_ID`` is set: the replicas' launcher sets it), else None (one server process counts in memory).
    One per store folder and process, so its job runner and its key guard share it."""
    if not os.environ.get(REPLICA_ENV):
        return None
    root = Path(store_root).expanduser().resolve()
    with _ledgers_lock:
        if root not in _ledgers:
            _ledgers[root] = RoomLedger(root)
        return _ledgers[root]


__all__ = ["HEARTBEAT_S", "REPLICA_ENV", "ROOM_DIR", "RoomLedger", "STALE_AFTER_S", "replica_ledger"]
