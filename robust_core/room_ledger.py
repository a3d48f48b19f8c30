"""A lecture room's shared counts, for dashboard replicas that share one store folder (``<store>/.room/``).

Each replica (a separate Streamlit process, possibly on another host) has its own job runner and its own lecturer-key
guard; a visitor who drops the proxy's affinity cookie lands on another replica, and would find a fresh quota there.
Given a :class:`RoomLedger`, :class:`robust_core.jobs.JobRunner` and :class:`robust_core.lecturer_key.LecturerKeyGuard`
count in it instead, so every replica sees the whole room:

    <store>/.room/
        .lock                       the ledger's lock (robust_core.file_locks.FolderLock): every check and the
                                    change it allows happen as one step for all replicas
        replicas/<ledger>.json      one per running ledger (host, pid, replica id); its mtime is its heartbeat
        jobs/<ledger>-<n>.json      one per live job with visitors among its requesters: owners, lane, queued or not
        paused.json                 the lanes paused for visitors (by the lecturer, on any replica)
        lecturer_key.json           failed key attempts (timestamps), last tries, the lecturer browsers

A replica that dies leaves its files behind; they are ignored (and removed by the next replica that counts) once its
pid is gone (same host) or its heartbeat is older than ``stale_after_s`` (any host: its mtime is compared with this
ledger's own heartbeat's, both set by the file server's clock, so hosts' clocks need not agree). Every file is written
whole (temporary file, fsync, rename).
"""
from __future__ import annotations

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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # removed meanwhile, or not one of ours: ignored


class RoomLedger:
    """The shared counts of the room whose store folder is ``store_root`` (see the module's docstring).

    ``replica_id``: this replica's name in the files (default ``$ROBUST_REPLICA_ID``, else host:pid). A daemon
    thread renews the heartbeat every ``heartbeat_s``; :meth:`close` stops it and removes this ledger's files."""

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
        for sub in ("replicas", "jobs"):
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
            except OSError:
                pass  # the store is unreachable for now: the next beat tries again

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
            record = {**fields, "ledger": self.name, "replica": self.replica_id, "host": self.host, "pid": self.pid}
            atomic_write_text(self.folder / "jobs" / f"{self.name}-{number}.json", json.dumps(record))

    def drop_job(self, number: int) -> None:
        with self._lock:
            (self.folder / "jobs" / f"{self.name}-{number}.json").unlink(missing_ok=True)

    def jobs(self, lane: str | None = None) -> list[dict]:
        """Every live replica's recorded jobs (of ``lane``); those of dead or silent replicas are removed."""
        with self._lock:
            live, found = self._live_ledgers(), []
            for path in (self.folder / "jobs").glob("*.json"):
                record = _read_json(path)
                if not isinstance(record, dict) or record.get("ledger") not in live:
                    path.unlink(missing_ok=True)
                elif lane is None or record.get("lane") == lane:
                    found.append(record)
            return found

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
            for path in (self.folder / "jobs").glob(f"{self.name}-*.json"):
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
