"""A challenge room on one server: N protocol students join a live "guess the number" challenge and each submit 3 times
within a minute, while one projector view and one lecturer view stay open.

    ROBUST_DATA_DIR=../shared/data python -m benchmarks.load_test --challenge-room --students 60

The lecturer's browserless session starts the challenge from its card (the Challenges page's lecturer view); each
student opens the short link (``/challenges?c=CODE``), chooses a nickname, then submits an answer three times at
seeded random moments of one minute, at least 4 s apart (the server refuses a student's second submission within 3 s).
The projector's session follows its board's one-second auto-reruns, as a browser does. Finally the lecturer clicks
Reveal and every student reads their rank.

Reported: submission-to-board latency (from the server's commit time of each submission, in the database, until the
projector's board first counts it; same machine, same clock), click-to-acknowledged latency, errors (exceptions shown,
error messages, timeouts), lost submissions (acknowledged but not in the database, or in the database but never on
the projector), whether every rank a student reads is the one their answer earns, and the server's CPU and RSS.
Targets on 2 cores with 60 students: no errors, nothing lost, board p95 < 2 s, RSS growth < 100 MB.
"""
from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import time
from pathlib import Path

PAGE = "challenges"
CHALLENGE = "02_guess_the_eps"  # the shipped guess challenge: its measured answer comes from shipped results
SUBMISSIONS_EACH = 3
WINDOW_S = 60.0  # the room's minute
TIMEOUT_S = 120.0
_COUNT = re.compile(r"\*\*(\d+)\*\* submissions")
_RANK = re.compile(r"rank \*\*(\d+)\*\*")


def _widget(session, kind: str, predicate=lambda e: True):
    return next(getattr(e, kind) for k, e in session.elements if k == kind and predicate(getattr(e, kind)))


def _alerts(session) -> list[str]:
    return [e.alert.body for k, e in session.elements if k == "alert"]


def _error_alerts(session) -> list[str]:
    from streamlit.proto.Alert_pb2 import Alert

    return [e.alert.body for k, e in session.elements if k == "alert" and e.alert.format == Alert.ERROR]


def schedule(n: int, *, seed: int = 0, window_s: float = WINDOW_S, gap_s: float = 4.0) -> list[list[float]]:
    """Per student, ``SUBMISSIONS_EACH`` moments in [0, window_s), at least ``gap_s`` apart (seeded)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        while True:
            times = sorted(rng.uniform(0, window_s) for _ in range(SUBMISSIONS_EACH))
            if all(b - a >= gap_s for a, b in zip(times, times[1:])):
                out.append(times)
                break
    return out


async def _student(base: str, code: str, index: int, moments: list[float], start: float, answers: list[float],
                   record: dict) -> object:
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    from benchmarks.streamlit_client import ProtocolSession

    session = ProtocolSession(base)
    record.update(student=index, errors=[], acks=[], answers=[])
    try:
        await session.download_page(PAGE)
        await session.connect()
        await session.open(PAGE, {"c": code}, timeout_s=TIMEOUT_S)
        name = _widget(session, "text_input", lambda w: w.label == "Your nickname")
        join = _widget(session, "button", lambda w: w.label == "Join")
        await session.run(widgets=[WidgetState(id=name.id, string_value=f"student{index}"),
                                   WidgetState(id=join.id, trigger_value=True)], timeout_s=TIMEOUT_S)
        await session.wait_for(lambda els: any("You play as" in t for t in session.texts()), timeout_s=TIMEOUT_S)
        acknowledged_at = -float("inf")
        for moment, answer in zip(moments, answers):
            # At the scheduled moment, but never within 3.5 s of the previous acknowledgement: the server refuses a
            # student's second submission within 3 s of the first's commit, and a student reads the "Submitted"
            # before clicking again.
            await asyncio.sleep(max(0.0, start + moment - time.monotonic(), acknowledged_at + 3.5 - time.monotonic()))
            field = _widget(session, "number_input", lambda w: w.label == "Your answer")
            submit = _widget(session, "button", lambda w: w.label == "Submit")
            sent = time.monotonic()
            await session.run(widgets=[WidgetState(id=field.id, double_value=answer),
                                       WidgetState(id=submit.id, trigger_value=True)], timeout_s=TIMEOUT_S)
            if any("Submitted" in a for a in _alerts(session)):
                acknowledged_at = time.monotonic()
                record["acks"].append(acknowledged_at - sent)
                record["answers"].append(answer)
            else:
                record["errors"].append(f"student {index}: not acknowledged: {_alerts(session)[:2]}")
        if session.exceptions():
            record["errors"].append(f"student {index}: exception(s): {session.exceptions()[:2]}")
    except Exception as exc:  # every failure is a finding
        first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
        record["errors"].append(f"student {index}: {type(exc).__name__}: {first_line}")
    return session


async def _projector(base: str, code: str, seen: list[tuple[float, int]], stop: asyncio.Event, errors: list) -> None:
    from benchmarks.streamlit_client import ProtocolSession

    session = ProtocolSession(base)
    try:
        await session.download_page(PAGE)
        await session.connect()
        await session.open(PAGE, {"c": code, "view": "projector", "present": "1"}, timeout_s=TIMEOUT_S)
        last = -1
        while not stop.is_set():
            counts = [int(m.group(1)) for t in session.texts() if (m := _COUNT.search(t))]
            if counts and counts[-1] != last:
                last = counts[-1]
                seen.append((time.time(), last))
            if len(session.elements) > 5000:  # a long room: keep the newest board only
                del session.elements[:-500]
            await asyncio.sleep(0.02)
        if session.exceptions():
            errors.append(f"projector: exception(s): {session.exceptions()[:2]}")
    except Exception as exc:
        errors.append(f"projector: {type(exc).__name__}: {exc}")
    finally:
        await session.close()


async def challenge_room(base: str, store_dir: str, n: int, *, window_s: float = WINDOW_S, gap_s: float = 4.0,
                         seed: int = 0, warm=None) -> dict:
    """The room (see the module's docstring) against the server at ``base`` on ``store_dir``; returns its record.
    ``warm()``, if given, is called once the lecturer's and the projector's views are up, before the students come
    (the load test samples the server's memory there: what the room itself adds is measured from that point)."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    from benchmarks.streamlit_client import ProtocolSession

    errors: list[str] = []
    lecturer = ProtocolSession(base)
    await lecturer.download_page(PAGE)
    await lecturer.connect()
    await lecturer.open(PAGE, {}, timeout_s=TIMEOUT_S)
    start_button = _widget(lecturer, "button", lambda w: w.id.endswith(f"start_{CHALLENGE}"))
    await lecturer.run(widgets=[WidgetState(id=start_button.id, trigger_value=True)], timeout_s=TIMEOUT_S)
    database = Path(store_dir) / ".challenges" / "board.sqlite3"
    with sqlite3.connect(database) as db:
        run_id, code = db.execute("SELECT id, code FROM runs WHERE challenge = ? ORDER BY id DESC LIMIT 1",
                                  (CHALLENGE,)).fetchone()
    seen: list[tuple[float, int]] = []
    stop = asyncio.Event()
    projector = asyncio.ensure_future(_projector(base, code, seen, stop, errors))
    await asyncio.sleep(2.0)  # the projector is up before the room arrives
    warm_sample = warm() if warm else None
    rng = random.Random(seed + 1)
    moments = schedule(n, seed=seed, window_s=window_s, gap_s=gap_s)
    answers = [[round(rng.uniform(0.0, 0.4), 3) for _ in range(SUBMISSIONS_EACH)] for _ in range(n)]
    records = [{} for _ in range(n)]
    start = time.monotonic() + 1.0
    sessions = await asyncio.gather(*(_student(base, code, i, moments[i], start, answers[i], records[i])
                                      for i in range(n)))
    with sqlite3.connect(database) as db:
        committed = [c for (c,) in db.execute("SELECT created FROM submissions WHERE run = ? ORDER BY id",
                                              (run_id,))]
    deadline = time.monotonic() + 10.0
    while (not seen or seen[-1][1] < len(committed)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await projector
    # submission k (in commit order) is on the board once the projector counts k
    latencies = []
    for k, created in enumerate(committed, start=1):
        shown = next((t for t, count in seen if count >= k), None)
        latencies.append(None if shown is None else max(0.0, shown - created))
    # the reveal: every student reads their rank
    await lecturer.open(PAGE, {}, timeout_s=TIMEOUT_S)
    reveal = _widget(lecturer, "button", lambda w: w.label == "Reveal")
    await lecturer.run(widgets=[WidgetState(id=reveal.id, trigger_value=True)], timeout_s=TIMEOUT_S)
    if lecturer.exceptions():
        errors.append(f"lecturer: exception(s): {lecturer.exceptions()[:2]}")
    await lecturer.close()
    from robust_core.challenges import ChallengeBoard

    measured = ChallengeBoard(store_dir).run(run_id).reference.get("measured")
    finals = [(r["answers"][-1], i) for i, r in enumerate(records) if r.get("answers")]
    expected = {i: rank for rank, (_, i) in enumerate(sorted(finals, key=lambda f: abs(f[0] - measured)), start=1)}
    wrong_ranks = []
    for i, session in enumerate(sessions):
        if i not in expected or session.ws is None:
            continue
        try:
            await session.open(PAGE, {"c": code}, timeout_s=TIMEOUT_S)
            read = [int(m.group(1)) for t in session.texts() if (m := _RANK.search(t))]
            # ties (equal distance) may go either way between the tied students: compare distances, not names
            mine = finals_distance(records[i], measured)
            if not read or abs(mine - sorted_distance(finals, measured, read[0])) > 1e-9:
                wrong_ranks.append((i, read[:1], expected[i]))
        except Exception as exc:
            errors.append(f"student {i} (rank): {type(exc).__name__}: {exc}")
        finally:
            await session.close()
    acked = sum(len(r.get("acks", [])) for r in records)
    return {"students": n, "code": code, "acknowledged": acked, "committed": len(committed),
            "on_board": seen[-1][1] if seen else 0, "lost": acked - len(committed),
            "never_shown": sum(1 for v in latencies if v is None),
            "board_latencies_s": [v for v in latencies if v is not None],
            "ack_latencies_s": [a for r in records for a in r.get("acks", [])],
            "errors": errors + [e for r in records for e in r.get("errors", [])],
            "wrong_ranks": wrong_ranks, "measured": measured, "warm": warm_sample}


def finals_distance(record: dict, measured: float) -> float:
    return abs(record["answers"][-1] - measured)


def sorted_distance(finals: list[tuple[float, int]], measured: float, rank: int) -> float:
    """The distance to ``measured`` of the answer at ``rank`` (1 = closest) among ``finals``; inf past the end."""
    distances = sorted(abs(a - measured) for a, _ in finals)
    return distances[rank - 1] if 1 <= rank <= len(distances) else float("inf")


__all__ = ["challenge_room", "schedule"]
