"""Locks and atomic writes for a store folder that several processes share: dashboard replicas (on one host or on
several, the store on a shared filesystem), sweeps, command-line runs.

- :class:`FolderLock`: one exclusive lock per folder (``<folder>/.lock``), re-entrant within a thread, for the
  store's saves, renames, deletes and imports: a check ("is this name free?") and the write it allows happen as one
  step for every process.
- :func:`key_lock` and :func:`compute_once`: one lock per computation (``<store>/.locks/<name>.lock``), so that an
  identical first-time computation asked for by two processes runs once: the second waits, then reads the first's
  result.
- :func:`atomic_write_bytes` / :func:`atomic_write_text`: a temporary file beside the target, fsync, ``os.replace``;
  a reader (in any process) sees the old file or the new one, never a half-written one, even after a crash.

The locks are advisory ``fcntl.flock`` locks. They work on local disks and on NFSv4 (Linux emulates ``flock`` there
with byte-range locks that the server arbitrates, so every host sees every other host's locks, and taking a lock
revalidates the client's cached view of the files); not on NFSv3 mounted with ``nolock``, nor on filesystems without
locks (some FUSE and SMB mounts), where two replicas would no longer exclude each other. The kernel (or the NFS
server, once the client's lease expires) releases a process's locks when it dies, however it dies: a waiter never
waits on a dead holder, and no lock file needs cleaning up by hand. Each acquisition opens its own file description,
so threads of one process exclude each other as processes do. POSIX only (fcntl); the project runs on Linux.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

LOCK_FILE = ".lock"
LOCKS_DIR = ".locks"  # per-computation lock files, in the store folder (dot folders are no datasets)
_POLL_FIRST_S, _POLL_MAX_S = 0.005, 0.1


class LockTimeout(TimeoutError):
    """A lock was not obtained within the time asked for; the message says which and how long."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, check: Callable[[Path], None] | None = None) -> None:
    """Write ``data`` to ``path`` whole or not at all: a temporary file in the same folder (a unique name, so threads
    and processes writing the same path never share one), flushed to disk, then renamed over ``path``.

    ``check(temporary_path)``, if given, runs on the complete temporary file (a hidden name with ``path``'s suffix, for
    readers that pick a format by it) before it replaces ``path``: what it raises leaves ``path`` as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix if check else "", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_synced(path: str | os.PathLike, data: bytes) -> None:
    """Write a new file and flush it to disk (inside a temporary folder that is renamed into place afterwards)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _try_flock(fd: int) -> bool:
    """An exclusive flock on ``fd`` if it is free now; False if another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        return False


def _flock(fd: int, *, what: str, timeout: float | None, while_waiting: Callable[[], None] | None) -> None:
    """Take an exclusive flock on ``fd``: at once if free, else polling (so that ``while_waiting`` runs, e.g. a job's
    cancellation check, and ``timeout`` can end the wait with :class:`LockTimeout`)."""
    start, pause = time.monotonic(), _POLL_FIRST_S
    while not _try_flock(fd):
        if while_waiting is not None:
            while_waiting()
        if timeout is not None and time.monotonic() - start > timeout:
            raise LockTimeout(f"{what} is held by another process for more than {timeout:g} s; try again later.")
        time.sleep(pause)
        pause = min(pause * 2, _POLL_MAX_S)


class FolderLock:
    """An exclusive lock on ``folder`` across processes (flock on ``<folder>/.lock``) and threads, re-entrant within a
    thread: a method holding it may call another that takes it. ``timeout`` (seconds, None: wait as long as it takes)
    bounds each wait; the lock is for short critical sections (a save, a rename), never for a computation."""

    def __init__(self, folder: str | os.PathLike, *, timeout: float | None = 120.0):
        self.folder, self.timeout = Path(folder), timeout
        self._local = threading.local()

    @property
    def held(self) -> bool:
        """Whether the calling thread holds the lock."""
        return getattr(self._local, "depth", 0) > 0

    def __enter__(self) -> "FolderLock":
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _flock(fd, what=f"The lock of {self.folder}", timeout=self.timeout, while_waiting=None)
            except BaseException:
                os.close(fd)
                raise
            self._local.fd = fd
        self._local.depth = depth + 1
        return self

    def __exit__(self, *exc) -> None:
        self._local.depth -= 1
        if self._local.depth == 0:
            fd, self._local.fd = self._local.fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


def _lock_name(name: str) -> str:
    if not name or "/" in name or "\0" in name or name.startswith("."):
        raise ValueError(f"a lock name is one plain file name, not {name!r}")
    return name


@contextlib.contextmanager
def key_lock(root: str | os.PathLike, name: str, *, timeout: float | None = None,
             while_waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock ``name`` of the store at ``root`` (``<root>/.locks/<name>.lock``) for the block.

    The holder removes the file before releasing it, so finished computations leave nothing behind; a waiter that
    then gets the lock of a removed file (it opened it before the removal) opens the new one and waits again, so two
    holders never overlap. ``while_waiting`` runs every poll while another holds the lock (it may raise: a cancelled
    job stops waiting); ``timeout``: :class:`LockTimeout` after that many seconds, None waits while the holder lives
    (its death releases the lock)."""
    folder = Path(root) / LOCKS_DIR
    path = folder / f"{_lock_name(name)}.lock"
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _flock(fd, what=f"The computation {name}", timeout=timeout, while_waiting=while_waiting)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)  # the previous holder removed this file: take the lock of the current one
    try:
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a person looking (the lock is the flock)
        yield
    finally:
        try:
            path.unlink(missing_ok=True)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def compute_once(root: str | os.PathLike, name: str, *, read: Callable[[], T | None], compute: Callable[[], T],
                 while_waiting: Callable[[], None] | None = None, timeout: float | None = None) -> T:
    """``read()`` if it finds the result, else ``compute()`` under the lock ``name`` (:func:`key_lock`), reading once
    more first: a process that waited for another one computing the same thing reads its result instead of computing
    it again. ``compute`` must store its result (where ``read`` finds it) before it returns. A holder that dies
    stored nothing, and the next holder computes."""
    found = read()
    if found is not None:
        return found
    with key_lock(root, name, timeout=timeout, while_waiting=while_waiting):
        found = read()
        if found is not None:
            return found
        return compute()


__all__ = ["FolderLock", "LOCKS_DIR", "LOCK_FILE", "LockTimeout", "atomic_write_bytes", "atomic_write_text",
           "compute_once", "key_lock", "write_synced"]
