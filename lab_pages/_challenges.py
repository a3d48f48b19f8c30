"""What the Challenges page's three views share (not a page): the server's one challenge room, the challenge files,
the board as built once per revision for every viewer, the join link and its QR code."""
from __future__ import annotations

import functools
import re
from urllib.parse import urlsplit

import streamlit as st

from lab_pages._audience import current_visitor, in_lecture_mode
from lab_pages._outputs import png_bytes, shared_output
from lab_pages._resources import get_store
from lab_pages._text import plain

CODE = re.compile(r"[A-Za-z2-9]{4}")
PAGE_PATH = "challenges"  # the page's URL path (app.py's navigation names the file lab_pages/challenges.py)
THUMBNAIL_PX = 140  # an entry's image on the board: 5x a 28-pixel digit, read from the back of a lecture hall


@st.cache_resource(show_spinner=False)
def _room(root: str):
    from robust_core.challenges import ChallengeRoom
    from robust_core.data import resolve_data_dir

    return ChallengeRoom(get_store(report=False), data_dir=resolve_data_dir())


def challenge_room():
    """The server's one :class:`robust_core.challenges.ChallengeRoom` for its store folder."""
    from robust_core.store import resolve_store_dir

    return _room(str(resolve_store_dir()))


def may_lead() -> bool:
    """Whether this browser may start, pause, reveal, reset, end, hide and export: the lecturer in lecture mode;
    anyone on a single-user lab. Checked again in every action's callback, whatever the page drew."""
    return not in_lecture_mode() or current_visitor().lecturer


def challenge_files():
    """The challenge files (robust_core.challenges.spec) and one message per bad one."""
    from robust_core.challenges import read_challenges

    return read_challenges()


@functools.lru_cache(maxsize=8)
def model_title(stem: str) -> str:
    """A shipped model's display name ("CNN · Standard") from its metadata; the file stem without one."""
    from robust_core.shipped import shipped_models

    return next((m.name for m in shipped_models() if m.file.stem == stem), stem)


def linked_run():
    """The run the address names (``?c=CODE``), or None. Opens the challenge database first, so a damaged one raises
    its ChallengeError here, whatever the address."""
    room = challenge_room()
    code = st.query_params.get("c", "")
    if not CODE.fullmatch(code):
        return None
    return room.board_db.run(code)


def join_url(code: str) -> str:
    """The short link a student types or scans: this server's address as the browser reached it (behind the lecture
    room's proxy, the public one), the page and the run's code."""
    parts = urlsplit(st.context.url or "")
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    return f"{origin}/{PAGE_PATH}?c={code}"


@functools.lru_cache(maxsize=32)
def qr_png(text: str) -> bytes:
    """``text`` as a QR code, a PNG made here (segno, pure Python): no external service sees the room's address."""
    import io

    import segno

    buffer = io.BytesIO()
    segno.make(text, error="m").save(buffer, kind="png", scale=8, border=2)
    return buffer.getvalue()


class BoardView:
    """A run's board at one revision, with every entry's thumbnail encoded: built once per revision for all viewers
    (:func:`board_view`), so the projector and 60 students polling the board cost the server one build per change."""

    def __init__(self, board):
        self.board = board
        self.by_id = {e.id: e for e in board.entries}
        self.thumbnails = {e.id: png_bytes(_picture(e.image), size=THUMBNAIL_PX)
                           for e in board.entries if e.image is not None}
        self.students = len({e.owner for e in board.entries})

    def ranked(self, ranking: str, limit: int | None = None) -> list:
        ids = self.board.ranks.get(ranking, [])
        return [self.by_id[i] for i in (ids if limit is None else ids[:limit])]


def _picture(image):
    import numpy as np

    array = np.asarray(image)
    return array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)


def board_view(run_id: int, *, include_hidden: bool = False) -> BoardView:
    """The run's :class:`BoardView` now: one indexed read of its revision, then the shared build for it."""
    room = challenge_room()
    revision = room.board_db.revision(run_id)
    # (the database's path in the key: run ids and revisions count from 1 in every store folder)
    return shared_output("challenge_board", (str(room.board_db.path), run_id, revision, include_hidden),
                         lambda: BoardView(room.board(run_id, include_hidden=include_hidden)), max_entries=64)


def state_badge(state: str) -> str:
    return {"open": ":green-badge[:material/play_arrow: open]", "paused": ":orange-badge[:material/pause: paused]",
            "revealed": ":blue-badge[:material/visibility: revealed]",
            "ended": ":gray-badge[:material/stop: ended]"}[state]


def entry_caption(view: BoardView, entry, *, rank: int | None = None) -> str:
    """An entry's caption on a board: the server's score first and in bold, then the nickname as plain text (captions
    render Markdown, and a nickname cannot be bold: "ada 0.001" cannot pass for a score of 0.001)."""
    run = view.board.run
    challenge = run.challenge
    prefix = f"{rank}. " if rank else ""
    if challenge.kind == "fool":
        return f"{prefix}**{entry.scores['norm']:.4f}** {plain(entry.nickname)}"
    if challenge.kind == "split":
        read = entry.scores["readings"]
        a, b = challenge.models
        knn = f"·{read['k-NN']['class']}" if "k-NN" in read else ""
        return f"{prefix}**{read[a]['class']}·{read[b]['class']}{knn}** {plain(entry.nickname)}"
    return f"{prefix}**{entry.answer:.3f}** {plain(entry.nickname)}"


__all__ = ["BoardView", "board_view", "challenge_files", "challenge_room", "entry_caption", "join_url", "linked_run",
           "may_lead", "model_title", "qr_png", "state_badge"]
