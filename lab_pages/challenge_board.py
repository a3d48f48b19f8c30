"""The public board of a challenge run, as the projector and the students see it (not a page): the join box, the live
count, the top entries as images beside the lab's own numbers, the guess histogram and its reveal."""
from __future__ import annotations

import streamlit as st

from lab_pages._challenges import (
    THUMBNAIL_PX,
    BoardView,
    board_view,
    entry_caption,
    join_url,
    model_title,
    qr_png,
    state_badge,
)
from lab_pages._layout import presenting, show_chart
from lab_pages._outputs import screen_figure, shared_output
from lab_pages._text import plain

TOP_ON_PROJECTOR = 5  # entries per ranking a 1280x720 screen shows at 112 px with their captions
TOP_IN_GALLERY = 8


def join_box(run, *, qr_px: int = 200) -> None:
    """The run's code, its short link and a QR code of it (made on this server)."""
    url = join_url(run.code)
    st.image(qr_png(url), width=qr_px, output_format="PNG")
    st.markdown(f"### Code **{run.code}**")
    st.caption(plain(url))


def _join_row(run) -> None:
    """The projector's join corner: the QR code beside the code and the short link."""
    url = join_url(run.code)
    qr, code = st.columns([1, 2], vertical_alignment="center", gap="small")
    qr.image(qr_png(url), width=120, output_format="PNG")
    code.markdown(f"Join with code  \n### **{run.code}**")
    code.caption(plain(url.split("://", 1)[-1]))


def _reference_line(run, model: str) -> str:
    if run.state not in ("revealed", "ended"):
        return "what gradients find shows at the reveal"
    ref = run.reference.get("models", {}).get(model)
    if not ref:
        return "gradients: not measured"
    if not ref.get("clean_correct"):
        return "this network misreads the image already"
    parts = []
    if ref.get("pgd_linf") is not None:
        parts.append(f"PGD L∞ {ref['pgd_linf']:.3f}")
    if ref.get("best_l2") is not None:
        parts.append(f"best-of L2 {ref['best_l2']:.2f} (its L∞ {ref['best_l2_linf']:.2f})")
    return "gradients: " + (" · ".join(parts) if parts else "found nothing")


def _fool_board(view: BoardView, limit: int) -> None:
    run = view.board.run
    columns = st.columns(len(run.challenge.models))
    for column, model in zip(columns, run.challenge.models):
        with column:
            ranked = view.ranked(model, limit)
            st.markdown(f"#### {plain(model_title(model))}")
            st.caption(f":material/smart_toy: {_reference_line(run, model)}")
            fooled = len(view.board.ranks.get(model, []))
            st.markdown(f"**{fooled}** of {len(view.board.entries)} entries fool it")
            if ranked:
                st.image([view.thumbnails[e.id] for e in ranked], width=THUMBNAIL_PX, output_format="PNG",
                         caption=[entry_caption(view, e, rank=i + 1) for i, e in enumerate(ranked)])


def _split_board(view: BoardView, limit: int) -> None:
    run = view.board.run
    a, b = run.challenge.models
    ranked = view.ranked("split", limit)
    st.markdown(f"**{len(view.board.ranks.get('split', []))}** of {len(view.board.entries)} drawings split "
                f"A = {plain(model_title(a))} and B = {plain(model_title(b))}")
    st.caption("Under each drawing: what A · B · the k-NN read, then who drew it.")
    if ranked:
        st.image([view.thumbnails[e.id] for e in ranked], width=THUMBNAIL_PX, output_format="PNG",
                 caption=[entry_caption(view, e, rank=i + 1) for i, e in enumerate(ranked)])
    else:
        st.caption("No drawing splits them yet.")
    others = [e for e in reversed(view.board.entries) if not e.scores.get("success")][:limit]
    if others:  # every drawing is scored: the newest of the rest, as the networks and the k-NN read them
        st.caption("The newest drawings that do not split them:")
        st.image([view.thumbnails[e.id] for e in others], width=THUMBNAIL_PX * 3 // 4, output_format="PNG",
                 caption=[entry_caption(view, e) for e in others])


def _answers_chart(view: BoardView):
    from robust_core.challenges.figures import answers_figure

    run = view.board.run
    answer = run.challenge.answer
    revealed = run.state in ("revealed", "ended")
    measured = run.reference.get("measured") if revealed else None
    answers = [e.answer for e in view.board.entries if e.answer is not None]
    return screen_figure(answers_figure(answers, low=answer.low, high=answer.high, measured=measured,
                                        reference=run.reference if revealed else None))


def _guess_board(view: BoardView, limit: int) -> None:
    run = view.board.run
    key = (run.code, run.id, run.revision, presenting())
    show_chart(st, shared_output("challenge_answers", key, lambda: _answers_chart(view)),
               config={"displayModeBar": False}, key=f"answers_{run.id}")
    if run.state in ("revealed", "ended"):
        measured = run.reference.get("measured")
        if measured is None:
            st.info("The model never falls that low within the search's range.")
            return
        closest = view.ranked("guess", limit)
        st.markdown(f"Measured: **{measured:.3f}** · closest: "
                    + (", ".join(f"{plain(e.nickname)} ({e.answer:.3f})" for e in closest) or "nobody answered"))


def show_board(view: BoardView) -> None:
    """A run's board (:func:`lab_pages._challenges.board_view`: built once per revision for every viewer)."""
    run = view.board.run  # the state and settings at this revision
    st.markdown(f"{state_badge(run.state)} &nbsp; **{view.students}** students · **{view.board.submissions}** "
                "submissions")
    limit = TOP_ON_PROJECTOR if run.challenge.kind == "fool" else TOP_IN_GALLERY
    {"fool": _fool_board, "split": _split_board, "guess": _guess_board}[run.challenge.kind](view, limit)


def projector_view(run) -> None:
    """The full-screen board: title, task and join corner in one band at the top, the board below, redrawn every
    second by itself (one read of the run's revision per viewer; the board is built once per change for all)."""
    top, join = st.columns([3, 2], vertical_alignment="top")
    top.markdown(f"### {plain(run.challenge.title)}")
    task = plain(run.challenge.task)
    if run.challenge.kind == "fool":
        task += f" Budget: {run.challenge.norm.upper().replace('LINF', 'L∞')} ≤ {run.settings.get('budget'):g}."
    top.caption(task)
    with join:
        _join_row(run)
    projector_board(run.id)


def _live(run_id: int) -> None:
    from robust_core.challenges import ChallengeError

    try:
        view = board_view(run_id)
    except ChallengeError:  # (the run was removed from the database)
        st.warning("This challenge no longer exists.")
        return
    show_board(view)


# The projector's board is the one the room watches: it shows a submission within a second (the target is 2 s). A
# student's copy of it is a glance beside their own entry: every 5 s, so 60 laptops ask the server 12 times a second,
# not 60.
@st.fragment(run_every=1.0)
def projector_board(run_id: int) -> None:
    _live(run_id)


@st.fragment(run_every=5.0)
def student_board(run_id: int) -> None:
    _live(run_id)


__all__ = ["join_box", "projector_board", "projector_view", "show_board", "student_board"]
