"""A lecture room's challenge boards: runs, nicknames and submissions in one SQLite database in the store folder
(``<store>/.challenges/board.sqlite3``), shared by every replica of the dashboard on the host.

Why SQLite: every submission is one transaction, committed to disk before the student is told it counts
(``synchronous=FULL``), so a server restart mid-challenge loses nothing that was acknowledged; the write-ahead log
lets the projector and 60 students read while one writes; and the rate limits, the one-live-entry rule and nickname
uniqueness are checked and applied in the same transaction (``BEGIN IMMEDIATE``: one writer at a time, across
processes), so two replicas cannot both accept what only one may. SQLite's locks need a local filesystem: for replicas
on several hosts the store's challenge database must stay on one of them (docs/lecture-room.md).

Tables:
    runs         one per started challenge: its spec (a JSON copy, so a run outlives an edited file), the lecturer's
                 settings, the lab's reference numbers, its state, and a revision counter that every change bumps
                 (the projector redraws only when it moves)
    nicknames    one per visitor (the public id of their cookie): the name and its two look-alike keys, each unique
    submissions  every submission ever made, never deleted: ``live`` marks each student's latest one per run (a new one
                 replaces the old on the board), ``hidden`` the lecturer's hiding, ``cleared`` a reset's
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..names import clean_name, name_keys
from .spec import Answer, Challenge

DB_DIR, DB_FILE = ".challenges", "board.sqlite3"
STATES = ("open", "paused", "revealed", "ended")
NICKNAME_MAX = 24  # characters: a board row and a gallery caption on the projector
# Per student and run. 3 s: a double click or a held Enter key counts once; 10 a minute: a room of 60 makes at most
# 600 submissions a minute, each a few milliseconds of scoring; 100 a run: a run's database grows by at most
# 60 x 100 x 4 KB.
RATE_LIMITS = {"min_interval_s": 3.0, "per_minute": 10, "per_run": 100}
NICKNAMES_PER_ADDRESS, NICKNAMES_PER_ADDRESS_ENV = 3, "ROBUST_CHALLENGE_NICKNAMES_PER_ADDRESS"
CODE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: a code read off a projector is typed right

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, code TEXT UNIQUE NOT NULL, challenge TEXT NOT NULL, spec TEXT NOT NULL,
    settings TEXT NOT NULL, reference TEXT NOT NULL, state TEXT NOT NULL, started REAL NOT NULL, started_by TEXT,
    revision INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS nicknames (
    owner TEXT PRIMARY KEY, nickname TEXT NOT NULL, key_case TEXT UNIQUE NOT NULL, key_look TEXT UNIQUE NOT NULL,
    created REAL NOT NULL, address TEXT);
CREATE INDEX IF NOT EXISTS nicknames_by_address ON nicknames(address);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY, run INTEGER NOT NULL REFERENCES runs(id), owner TEXT NOT NULL, created REAL NOT NULL,
    image BLOB, answer REAL, scores TEXT NOT NULL, live INTEGER NOT NULL DEFAULT 1,
    hidden INTEGER NOT NULL DEFAULT 0, cleared INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS submissions_by_run ON submissions(run, live, owner);
CREATE INDEX IF NOT EXISTS submissions_by_owner ON submissions(run, owner, created);
"""


def closed_message(state: str) -> str:
    """What a student is told when they submit to a run that is not open."""
    return {"paused": "The lecturer paused this challenge: wait for it to go on.",
            "revealed": "The answer is out: this challenge takes no more submissions.",
            "ended": "This challenge has ended."}[state]


class ChallengeError(ValueError):
    """A refused challenge action (a taken nickname, a closed run, a rate limit); the message is for the student."""


class RateLimited(ChallengeError):
    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Run:
    id: int
    code: str
    challenge: Challenge
    settings: dict
    reference: dict
    state: str
    started: float
    revision: int


@dataclass(frozen=True)
class Entry:
    """One live submission on a board: who (by nickname), when, what (image or answer), and the server's scores."""

    id: int
    owner: str
    nickname: str
    created: float
    scores: dict
    answer: float | None
    hidden: bool
    image: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Board:
    """A run's board at one revision: its live entries (hidden ones only when asked for) and their ranks.

    ``ranks``: per ranking ({model name: [...]} for fool, {"split": [...]} and {"guess": [...]} once revealed), the
    ranked entries' ids, best first. Unranked entries (not fooling, not splitting) are on the board, without a rank."""

    run: Run
    entries: tuple[Entry, ...]
    ranks: dict[str, list[int]]
    submissions: int  # every submission of the run, replaced ones included

    def rank_of(self, entry_id: int, ranking: str) -> int | None:
        ids = self.ranks.get(ranking, [])
        return ids.index(entry_id) + 1 if entry_id in ids else None


def _spec_json(challenge: Challenge) -> str:
    return json.dumps(asdict(challenge))


def _spec_from_json(text: str) -> Challenge:
    data = json.loads(text)
    data["models"] = tuple(data["models"])
    if data.get("answer") is not None:
        data["answer"] = Answer(**data["answer"])
    return Challenge(**data)


def _image_bytes(image: np.ndarray | None) -> bytes | None:
    if image is None:
        return None
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(image, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def _image_from_bytes(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.load(io.BytesIO(blob), allow_pickle=False)


class ChallengeBoard:
    """The challenge database of store folder ``root``. Every method opens its own connection: Streamlit runs each
    session in its own thread, and SQLite connections are not shared between threads."""

    def __init__(self, root: str | Path, *, rate_limits: dict | None = None, nicknames_per_address: int | None = None):
        self.path = Path(root) / DB_DIR / DB_FILE
        self.rate_limits = {**RATE_LIMITS, **(rate_limits or {})}
        if nicknames_per_address is None:
            import os

            try:
                nicknames_per_address = int(os.environ.get(NICKNAMES_PER_ADDRESS_ENV, NICKNAMES_PER_ADDRESS))
            except ValueError:
                nicknames_per_address = NICKNAMES_PER_ADDRESS
        self.nicknames_per_address = max(0, nicknames_per_address)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")  # a committed submission survives a power cut, not only a crash
            db.execute("PRAGMA foreign_keys=ON")
            if write:
                db.execute("BEGIN IMMEDIATE")  # the checks below and the write they allow: one step for all processes
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            else:
                yield db
        except sqlite3.DatabaseError as exc:
            raise ChallengeError(f"the challenge database {self.path.name} cannot be used: {exc}") from exc
        finally:
            db.close()

    # ---- runs ------------------------------------------------------------------------------------------------------
    def start(self, challenge: Challenge, *, by: str = "", settings: dict | None = None,
              reference: dict | None = None) -> Run:
        """Open a new run of ``challenge`` (others may be running: each has its own code and board)."""
        settings = dict(settings or {})
        if challenge.kind == "fool":
            settings.setdefault("budget", challenge.budget)
        with self._connect(write=True) as db:
            for _ in range(20):
                code = "".join(secrets.choice(CODE_LETTERS) for _ in range(4))
                if db.execute("SELECT 1 FROM runs WHERE code = ?", (code,)).fetchone() is None:
                    break
            cursor = db.execute(
                "INSERT INTO runs (code, challenge, spec, settings, reference, state, started, started_by) "
                "VALUES (?, ?, ?, ?, ?, 'open', ?, ?)",
                (code, challenge.name, _spec_json(challenge), json.dumps(settings), json.dumps(reference or {}),
                 time.time(), by))
            run_id = cursor.lastrowid
        return self.run(run_id)

    def _run_row(self, row) -> Run:
        return Run(id=row[0], code=row[1], challenge=_spec_from_json(row[2]), settings=json.loads(row[3]),
                   reference=json.loads(row[4]), state=row[5], started=row[6], revision=row[7])

    _RUN_COLUMNS = "id, code, spec, settings, reference, state, started, revision"

    def run(self, run: int | str) -> Run | None:
        """The run with id ``run`` (an int) or code ``run`` (its 4 letters, any case), or None."""
        with self._connect() as db:
            if isinstance(run, str):
                row = db.execute(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE code = ?",
                                 (run.strip().upper(),)).fetchone()
            else:
                row = db.execute(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = ?", (int(run),)).fetchone()
        return None if row is None else self._run_row(row)

    def runs(self, *, include_ended: bool = False) -> list[Run]:
        """The runs, newest first (the ended ones only when asked)."""
        where = "" if include_ended else "WHERE state != 'ended'"
        with self._connect() as db:
            rows = db.execute(f"SELECT {self._RUN_COLUMNS} FROM runs {where} ORDER BY id DESC").fetchall()
        return [self._run_row(r) for r in rows]

    def revision(self, run_id: int) -> int:
        """A number that changes whenever the run's board or state does: one indexed read, for views that poll."""
        with self._connect() as db:
            row = db.execute("SELECT revision FROM runs WHERE id = ?", (run_id,)).fetchone()
        return -1 if row is None else row[0]

    def set_state(self, run_id: int, state: str) -> Run:
        """Pause (submissions refused), open again, reveal (the measured answer and the lab's numbers shown;
        submissions closed) or end (the run leaves the list; its board stays in the database)."""
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, not {state!r}")
        with self._connect(write=True) as db:
            if db.execute("UPDATE runs SET state = ?, revision = revision + 1 WHERE id = ?",
                          (state, run_id)).rowcount != 1:
                raise ChallengeError("no such challenge run")
        return self.run(run_id)

    def reset(self, run_id: int) -> None:
        """Clear the board and open the run again. The cleared submissions stay in the database (``cleared``)."""
        with self._connect(write=True) as db:
            db.execute("UPDATE submissions SET cleared = 1, live = 0 WHERE run = ? AND cleared = 0", (run_id,))
            db.execute("UPDATE runs SET state = 'open', revision = revision + 1 WHERE id = ?", (run_id,))

    def set_reference(self, run_id: int, reference: dict) -> None:
        with self._connect(write=True) as db:
            db.execute("UPDATE runs SET reference = ?, revision = revision + 1 WHERE id = ?",
                       (json.dumps(reference), run_id))

    # ---- nicknames -------------------------------------------------------------------------------------------------
    def nickname(self, owner: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT nickname FROM nicknames WHERE owner = ?", (owner,)).fetchone()
        return None if row is None else row[0]

    def claim_nickname(self, owner: str, nickname: str, *, address: str | None = None) -> str:
        """Bind ``nickname`` (cleaned: invisible characters removed, spacing collapsed) to visitor ``owner``, once:
        a browser keeps its first nickname, and no two visitors hold names that read alike (case, full-width forms,
        Unicode's look-alikes: :func:`robust_core.names.name_keys`). Returns the name kept.

        ``address``: the client's network address, when known. At most ``nicknames_per_address`` nicknames come from
        one address (a laptop, a phone and a tablet; 0: no limit, for a room behind one NAT): a script that drops its
        cookie at every request gets a new visitor id each time, not a new player on the board. Only a digest of the
        address is kept."""
        name = clean_name(nickname)
        if not name:
            raise ChallengeError("Choose a nickname.")
        if len(name) > NICKNAME_MAX:
            raise ChallengeError(f"A nickname has at most {NICKNAME_MAX} characters.")
        if not any(c.isalnum() for c in name):
            raise ChallengeError("A nickname needs at least one letter or digit.")
        problem = nickname_problem(name)
        if problem:
            raise ChallengeError(problem)
        key_case, key_look = nickname_keys(name)
        with self._connect(write=True) as db:
            mine = db.execute("SELECT nickname, key_case, key_look FROM nicknames WHERE owner = ?",
                              (owner,)).fetchone()
            if mine is not None:
                if key_case == mine[1] or key_look == mine[2]:
                    return mine[0]
                raise ChallengeError(f"This browser already plays as “{mine[0]}”: a nickname is kept for the whole "
                                     "lecture.")
            if db.execute("SELECT 1 FROM nicknames WHERE key_case = ? OR key_look = ?",
                          (key_case, key_look)).fetchone() is not None:
                raise ChallengeError("That nickname (or one that reads the same) is taken: choose another.")
            digest = None
            if address:
                import hashlib

                digest = hashlib.sha256(address.encode()).hexdigest()[:16]
                cap = self.nicknames_per_address
                if cap and db.execute("SELECT COUNT(*) FROM nicknames WHERE address = ?",
                                      (digest,)).fetchone()[0] >= cap:
                    raise ChallengeError(f"{cap} players already joined from this device's network address. On a "
                                         "shared network, ask the lecturer to lift the limit.")
            db.execute("INSERT INTO nicknames (owner, nickname, key_case, key_look, created, address) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (owner, name, key_case, key_look, time.time(), digest))
        return name

    # ---- submissions -----------------------------------------------------------------------------------------------
    def submit(self, run_id: int, owner: str, *, scores: dict, image: np.ndarray | None = None,
               answer: float | None = None, now: float | None = None) -> int:
        """Record a submission that the server scored (``scores``), as the student's live entry of the run (their
        previous one stays in the database, off the board). Refused while the run is not open, without a nickname,
        and past the rate limits (:data:`RATE_LIMITS`, counted in the database: every replica sees every
        submission). Returns the submission's id once it is on disk."""
        now = time.time() if now is None else now
        limits = self.rate_limits
        with self._connect(write=True) as db:
            row = db.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise ChallengeError("This challenge no longer exists.")
            if row[0] != "open":
                raise ChallengeError(closed_message(row[0]))
            if db.execute("SELECT 1 FROM nicknames WHERE owner = ?", (owner,)).fetchone() is None:
                raise ChallengeError("Choose a nickname first.")
            times = [t for (t,) in db.execute("SELECT created FROM submissions WHERE run = ? AND owner = ? "
                                              "ORDER BY created DESC", (run_id, owner))]
            if len(times) >= limits["per_run"]:
                raise RateLimited(f"You have made the {limits['per_run']} submissions a challenge allows.", math.inf)
            if times and now - times[0] < limits["min_interval_s"]:
                wait = limits["min_interval_s"] - (now - times[0])
                raise RateLimited(f"Wait {math.ceil(wait)} s before submitting again.", wait)
            recent = [t for t in times if now - t < 60.0]
            if len(recent) >= limits["per_minute"]:
                wait = 60.0 - (now - recent[limits["per_minute"] - 1])
                raise RateLimited(f"At most {limits['per_minute']} submissions a minute: wait {math.ceil(wait)} s.",
                                  wait)
            db.execute("UPDATE submissions SET live = 0 WHERE run = ? AND owner = ? AND live = 1", (run_id, owner))
            cursor = db.execute("INSERT INTO submissions (run, owner, created, image, answer, scores) "
                                "VALUES (?, ?, ?, ?, ?, ?)",
                                (run_id, owner, now, _image_bytes(image), answer, json.dumps(scores)))
            db.execute("UPDATE runs SET revision = revision + 1 WHERE id = ?", (run_id,))
            return cursor.lastrowid

    def hide(self, submission_id: int, hidden: bool = True) -> None:
        """Take a submission off the public board (or put it back); it stays in the database and in the export."""
        with self._connect(write=True) as db:
            row = db.execute("SELECT run FROM submissions WHERE id = ?", (submission_id,)).fetchone()
            if row is None:
                raise ChallengeError("no such submission")
            db.execute("UPDATE submissions SET hidden = ? WHERE id = ?", (int(hidden), submission_id))
            db.execute("UPDATE runs SET revision = revision + 1 WHERE id = ?", (row[0],))

    def entries(self, run_id: int, *, include_hidden: bool = False, live_only: bool = True,
                with_images: bool = True) -> list[Entry]:
        where = "s.run = ?" + (" AND s.live = 1" if live_only else "") + ("" if include_hidden else " AND s.hidden = 0")
        image = "s.image" if with_images else "NULL"
        with self._connect() as db:
            rows = db.execute(f"SELECT s.id, s.owner, COALESCE(n.nickname, ''), s.created, s.scores, s.answer, "
                              f"s.hidden, {image} FROM submissions s LEFT JOIN nicknames n ON n.owner = s.owner "
                              f"WHERE {where} ORDER BY s.created, s.id", (run_id,)).fetchall()
        return [Entry(id=r[0], owner=r[1], nickname=r[2], created=r[3], scores=json.loads(r[4]), answer=r[5],
                      hidden=bool(r[6]), image=_image_from_bytes(r[7])) for r in rows]

    def submission_count(self, run_id: int) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM submissions WHERE run = ? AND cleared = 0",
                              (run_id,)).fetchone()[0]

    def board(self, run_id: int, *, include_hidden: bool = False) -> Board:
        """The run's board now: live entries, ranked (:func:`rank_entries`)."""
        run = self.run(run_id)
        if run is None:
            raise ChallengeError("This challenge no longer exists.")
        entries = self.entries(run_id, include_hidden=include_hidden)
        return Board(run=run, entries=tuple(entries), ranks=rank_entries(run, entries),
                     submissions=self.submission_count(run_id))

    # ---- export (robust_core.challenges.export) ---------------------------------------------------------------------
    def export_csv(self, run_id: int) -> str:
        """Every submission of the run (replaced, hidden and cleared ones marked), one row each, scores as columns."""
        from .export import board_csv

        return board_csv(self, run_id)

    def export_npz(self, run_id: int) -> bytes:
        """The run's submitted images as an .npz (:func:`robust_core.challenges.export.board_npz`)."""
        from .export import board_npz

        return board_npz(self, run_id)

    def export_rows(self, run_id: int) -> list[dict]:
        """Every submission of the run, in id order: id, nickname, created, live, hidden, cleared, answer, scores
        (as stored) and image."""
        with self._connect() as db:
            rows = db.execute("SELECT s.id, COALESCE(n.nickname, ''), s.created, s.live, s.hidden, s.cleared, "
                              "s.answer, s.scores, s.image FROM submissions s LEFT JOIN nicknames n "
                              "ON n.owner = s.owner WHERE s.run = ? ORDER BY s.id", (run_id,)).fetchall()
        return [{"id": r[0], "nickname": r[1], "created": r[2], "live": r[3], "hidden": r[4], "cleared": r[5],
                 "answer": r[6], "scores": json.loads(r[7]), "image": _image_from_bytes(r[8])} for r in rows]


# Letter pairs that read as one letter at a projector's caption size ("rn" for "m"): Unicode's single-character
# look-alikes are robust_core.names's; these are the multi-character ones its model names leave out, applied to
# nicknames, which sit beside a score in small type.
_MULTI_LOOK_ALIKES = (("rn", "m"), ("vv", "w"), ("cl", "d"), ("ii", "u"))
MAX_MARKS_PER_LETTER = 2  # combining accents on one letter: a Vietnamese letter has two; "Zalgo" text dozens
_JOINERS = " -_'."  # allowed in a nickname, ignored when comparing two: "ada." reads as "ada"


def nickname_keys(name: str) -> tuple[str, str]:
    """Two spellings of what a reader sees in nickname ``name``; two nicknames read alike when either is equal.

    :func:`robust_core.names.name_keys` (case, compatibility forms, Unicode's look-alikes) of the name without its
    accents and joiners, with each letter pair of ``_MULTI_LOOK_ALIKES`` folded to its letter in the keys' own
    alphabet: folded after the look-alikes, so that a disguised half of a pair ("cI" with a capital I, "c1") still
    folds ("cIaude" is "claude" is "daude")."""
    import unicodedata

    from ..names import prototypes

    skeleton = "".join(c for c in unicodedata.normalize("NFD", clean_name(name))
                       if not unicodedata.category(c).startswith("M") and c not in _JOINERS)

    def spellings(text: str) -> set[str]:
        return {text, prototypes(text), prototypes(text).casefold(), prototypes(text.casefold()),
                unicodedata.normalize("NFKC", prototypes(text.casefold())).casefold()}

    def fold(key: str) -> str:
        for pair, letter in _MULTI_LOOK_ALIKES:
            target = unicodedata.normalize("NFKC", prototypes(letter)).casefold()
            for spelled in sorted(spellings(pair), key=len, reverse=True):
                key = key.replace(spelled, target)
        return key

    return tuple(fold(k) for k in name_keys(skeleton))


def nickname_problem(name: str) -> str | None:
    """Why ``name`` (already cleaned) cannot be a nickname, or None. A nickname sits beside a score on the board: it
    holds letters and digits of any script, spaces and the joiners ``- _ ' .``, nothing that could pass for a score's
    punctuation (``·``, ``:``, ``=``, ``%``, ``|``) or spill over the lines around it (a pile of combining marks)."""
    import unicodedata

    if not any(unicodedata.category(c) in ("Lu", "Ll", "Lt", "Lo") for c in name):  # (not only modifier letters)
        return "A nickname needs a letter."
    if not unicodedata.category(name[0]).startswith("L"):
        return "A nickname starts with a letter."
    for word in name.split():
        if not any(c.isdigit() for c in word):
            continue
        try:
            float(word.strip("-_'."))
        except ValueError:
            continue
        return "A nickname holds no number on its own: on the board it would read as a score."
    marks = 0
    for c in name:
        category = unicodedata.category(c)
        if category.startswith("M"):
            marks += 1
            if marks > MAX_MARKS_PER_LETTER:
                return f"A letter may carry at most {MAX_MARKS_PER_LETTER} accents in a nickname."
            continue
        marks = 0
        if not (category[0] in "LN" or c in " -_'."):
            return "A nickname holds letters, digits, spaces and - _ ' . only."
    return None


def rank_entries(run: Run, entries: list[Entry]) -> dict[str, list[int]]:
    """The rankings of a board, best first, ties to the earlier submission.

    fool: per model, the entries that fool it, by the perturbation's norm in the challenge's norm (smaller is better).
    split: the entries that split the models, by their split score (larger is better).
    guess: once revealed, every answer by its distance to the measured value."""
    challenge = run.challenge
    if challenge.kind == "fool":
        return {m: [e.id for e in sorted((e for e in entries if m in e.scores.get("fooled", ())),
                                         key=lambda e: (e.scores["norm"], e.created, e.id))]
                for m in challenge.models}
    if challenge.kind == "split":
        return {"split": [e.id for e in sorted((e for e in entries if e.scores.get("success")),
                                               key=lambda e: (-e.scores["split"], e.created, e.id))]}
    measured = run.reference.get("measured")
    if run.state not in ("revealed", "ended") or measured is None:
        return {}
    return {"guess": [e.id for e in sorted((e for e in entries if e.answer is not None),
                                           key=lambda e: (abs(e.answer - measured), e.created, e.id))]}


__all__ = ["Board", "ChallengeBoard", "ChallengeError", "Entry", "NICKNAME_MAX", "RATE_LIMITS", "RateLimited", "Run",
           "STATES", "nickname_keys", "nickname_problem", "rank_entries"]
