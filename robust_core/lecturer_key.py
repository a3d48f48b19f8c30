"""Throttled checks of the lecturer key: a room of visitors cannot guess it by trying.

    guard = LecturerKeyGuard()
    verdict = guard.attempt(typed_key, visitor=visitor.owner)
    verdict.accepted, verdict.message   # message: why it was refused ("Wrong key." or a wait)

Without throttling, one browser tried about 11 keys a second. Here each visitor gets a few tries per window, a
second between tries, and the whole server a bounded number of failures per window: a visitor who forges a new
cookie for every try (a new visitor each time) still meets the server-wide bound, so an 8-character random key
would take centuries at 30 guesses a minute.

So that the bound cannot lock the lecturer out:
- a browser that entered the key stays the lecturer (``is_lecturer(visitor)``): reloads, new tabs and a room's
  flood of guesses change nothing for it (its visitor id is the hash of a 128-bit secret kept in its cookie, which
  no classmate can forge);
- the server's own machine (``from_server_machine=True``: a loopback connection that no proxy forwarded) meets only
  its own per-visitor bound, never the room's; the lecturer can always unlock at the podium's
  ``http://localhost:8501``.

With a ``ledger`` (:class:`robust_core.room_ledger.RoomLedger`), every replica of the room sharing the store folder
counts in one place: the failures (timestamps, wall-clock time), the last tries and the lecturer browsers, so a visitor
who lands on another replica meets the same bounds, and the lecturer stays the lecturer there.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .access import is_lecturer_key

KEY_STATE = "lecturer_key"  # the ledger's state holding the guard's counts


@dataclass(frozen=True)
class KeyVerdict:
    accepted: bool
    message: str | None = None  # None when accepted
    retry_after_s: float = 0.0  # > 0 when the attempt was not even compared


class LecturerKeyGuard:
    """Counts failed lecturer-key attempts per visitor and for the whole server, in sliding windows. Thread-safe.

    ``visitor_failures`` failures of one visitor within ``window_s`` lock that visitor out until the oldest leaves
    the window; ``server_failures`` failures of everyone within ``window_s`` lock every new attempt out likewise;
    attempts of one visitor less than ``min_interval_s`` apart are refused uncompared. With a ``ledger``, "the
    server" is every replica sharing it, and the default clock is the wall clock (``time.time``: comparable between
    processes and hosts).
    """

    def __init__(self, *, visitor_failures: int = 5, server_failures: int = 30, window_s: float = 60.0,
                 min_interval_s: float = 1.0, clock: Callable[[], float] | None = None, ledger=None):
        if visitor_failures < 1 or server_failures < 1 or window_s <= 0 or min_interval_s < 0:
            raise ValueError("the guard needs at least one try, a positive window and a non-negative interval")
        self.visitor_failures, self.server_failures = visitor_failures, server_failures
        self.window_s, self.min_interval_s = window_s, min_interval_s
        self._clock = clock or (time.time if ledger is not None else time.monotonic)
        self.ledger = ledger
        self._lock = threading.RLock()
        self._server: deque[float] = deque()
        self._visitors: dict[str, deque[float]] = {}
        self._last_try: dict[str, float] = {}
        self._lecturers: set[str] = set()
        self._left: set[str] = set()  # visitors who left lecturer mode: their other tabs are visitors too

    def attempt(self, key: str | None, *, visitor: str, from_server_machine: bool = False,
                environ=None) -> KeyVerdict:
        """Compare ``key`` with the lecturer key unless ``visitor`` or the server is locked out; record a failure.

        ``from_server_machine``: the attempt came from the server's own machine, which the room's failures do not
        lock out (its own still do). Accepted visitors are remembered: see :meth:`is_lecturer`."""
        with self._lock, self._shared():
            now = self._clock()
            self._forget_before(now - self.window_s)
            wait = self._wait(visitor, now, room_bound=not from_server_machine)
            self._last_try[visitor] = now
            if wait > 0:
                return KeyVerdict(False, f"Too many attempts: try again in {math.ceil(wait)} s.", wait)
            if is_lecturer_key(key, environ):
                self._visitors.pop(visitor, None)
                self._lecturers.add(visitor)
                self._left.discard(visitor)
                return KeyVerdict(True)
            self._visitors.setdefault(visitor, deque()).append(now)
            if not from_server_machine:
                self._server.append(now)
            return KeyVerdict(False, "Wrong key.")

    def is_lecturer(self, visitor: str) -> bool:
        """Whether ``visitor`` entered the right key on this server (until :meth:`leave`)."""
        with self._lock:
            self._read_shared()
            return visitor in self._lecturers

    def leave(self, visitor: str) -> None:
        """``visitor`` is a visitor again (the lecturer handing the laptop over, say)."""
        with self._lock, self._shared():
            self._lecturers.discard(visitor)
            self._left.add(visitor)

    def has_left(self, visitor: str) -> bool:
        """Whether ``visitor`` left lecturer mode since it last entered the key (every tab of it is a visitor)."""
        with self._lock:
            self._read_shared()
            return visitor in self._left

    # ---- the room's ledger: the same counts for every replica ------------------------------------------------------
    @contextlib.contextmanager
    def _shared(self):
        """With a ledger: hold its lock, load the room's counts, and write them back after the block changed them."""
        if self.ledger is None:
            yield
            return
        with self.ledger.locked():
            self._read_shared()
            yield
            state = {"server": list(self._server), "visitors": {v: list(t) for v, t in self._visitors.items()},
                     "last_try": self._last_try, "lecturers": sorted(self._lecturers), "left": sorted(self._left)}
            self.ledger.update_state(KEY_STATE, lambda _: state)

    def _read_shared(self) -> None:
        if self.ledger is None:
            return
        state = self.ledger.read_state(KEY_STATE, {})
        try:
            server = deque(float(t) for t in state.get("server", []))
            visitors = {str(v): deque(float(t) for t in times) for v, times in state.get("visitors", {}).items()}
            last_try = {str(v): float(t) for v, t in state.get("last_try", {}).items()}
            lecturers, left = {str(v) for v in state.get("lecturers", [])}, {str(v) for v in state.get("left", [])}
        except (AttributeError, TypeError, ValueError):  # not the file the guard writes (a hand edit): start afresh
            server, visitors, last_try, lecturers, left = deque(), {}, {}, set(), set()
        self._server, self._visitors, self._last_try, self._lecturers, self._left = (server, visitors, last_try,
                                                                                     lecturers, left)

    def _wait(self, visitor: str, now: float, *, room_bound: bool = True) -> float:
        """Seconds until ``visitor`` may try again (0: now); the lock is held."""
        waits = [0.0]
        last = self._last_try.get(visitor)
        if last is not None:
            waits.append(last + self.min_interval_s - now)
        mine = self._visitors.get(visitor, ())
        if len(mine) >= self.visitor_failures:
            waits.append(mine[-self.visitor_failures] + self.window_s - now)
        if room_bound and len(self._server) >= self.server_failures:
            waits.append(self._server[-self.server_failures] + self.window_s - now)
        return max(waits)

    def _forget_before(self, horizon: float) -> None:
        while self._server and self._server[0] < horizon:
            self._server.popleft()
        for visitor in list(self._visitors):
            failures = self._visitors[visitor]
            while failures and failures[0] < horizon:
                failures.popleft()
            if not failures:
                del self._visitors[visitor]
        # Last tries older than the window no longer matter (min_interval_s is far below window_s).
        for visitor in [v for v, t in self._last_try.items() if t < horizon]:
            del self._last_try[visitor]


__all__ = ["KeyVerdict", "LecturerKeyGuard"]
