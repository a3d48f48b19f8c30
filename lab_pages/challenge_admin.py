"""The lecturer's view of the challenges (not a page): start one from its file, pause, reveal, reset and end a run,
hide a submission, export the board. Every action checks again, in its callback, that this browser may lead
(:func:`lab_pages._challenges.may_lead`): a forged click from a student's browser changes nothing."""
from __future__ import annotations

import math

import streamlit as st

from lab_pages._audience import current_visitor
from lab_pages._challenges import (
    THUMBNAIL_PX,
    board_view,
    challenge_files,
    challenge_room,
    entry_caption,
    join_url,
    may_lead,
    state_badge,
)
from lab_pages._outputs import shared_output
from lab_pages._text import plain


def _act(action, *args) -> None:
    from robust_core.challenges import ChallengeError

    if not may_lead():
        st.session_state["admin_message"] = ("error", "Only the lecturer runs the challenges.")
        return
    try:
        action(*args)
    except ChallengeError as exc:
        st.session_state["admin_message"] = ("error", str(exc))


def _start(challenge, budget_key: str | None) -> None:
    if not may_lead():
        st.session_state["admin_message"] = ("error", "Only the lecturer runs the challenges.")
        return
    budget = st.session_state.get(budget_key) if budget_key else None
    st.session_state["challenge_starting"] = (challenge, budget)


def _starting() -> None:
    """A Start in progress: the lab's reference numbers (seconds of attacks for a fool challenge, the first time for a
    set of weights) are measured in the server's job runner, like every page's heavy work, with progress; then the run
    opens. The page stops here until they are ready."""
    from lab_pages._jobs import run_job
    from robust_core.challenges import ChallengeError

    challenge, budget = st.session_state["challenge_starting"]
    room = challenge_room()
    if st.button("Cancel this start", key="cancel_start", icon=":material/close:"):
        st.session_state.pop("challenge_starting", None)
        st.rerun()
    try:
        job = run_job(f"challenge-reference|{room.board_db.path}|{challenge.name}|{challenge.models}",
                      lambda context: room.reference(challenge),
                      label=f"The lab's numbers for “{challenge.title}”")
        run = room.start(challenge, by=current_visitor().owner, budget=budget, reference=job.result)
    except ChallengeError as exc:
        st.session_state["admin_message"] = ("error", str(exc))
    else:
        st.session_state["admin_message"] = ("success", f"Started “{challenge.title}”: code {run.code}.")
    st.session_state.pop("challenge_starting", None)


def _challenge_list() -> None:
    from robust_core.challenges import budget_limit
    from robust_core.data import dataset_info

    challenges, errors = challenge_files()
    for message in errors:
        st.warning(f"A challenge file could not be read: {plain(message)}", icon=":material/warning:")
    columns = st.columns(3)
    for i, challenge in enumerate(challenges):
        with columns[i % 3].container(border=True, height="stretch"):
            st.markdown(f"**{plain(challenge.title)}**")
            st.caption(f"{challenge.kind} · {plain(challenge.task)}")
            budget_key = None
            if challenge.kind == "fool":
                pixels = math.prod(dataset_info(challenge.dataset).shape)
                budget_key = f"budget_{challenge.name}"
                st.number_input(f"Budget ({challenge.norm.upper().replace('LINF', 'L∞')}, pixel scale)",
                                min_value=0.005, max_value=budget_limit(challenge.norm, pixels),
                                value=challenge.budget, step=0.01, format="%.3f", key=budget_key)
            st.button("Start", key=f"start_{challenge.name}", icon=":material/play_arrow:", type="primary",
                      on_click=_start, args=(challenge, budget_key))
    st.caption("Each challenge is a file in `assets/challenges/` (robust_core/challenges/spec.py says what it holds): "
               "add one for your own lecture.")


def _export(run, view) -> None:
    room = challenge_room()
    key = (str(room.board_db.path), run.id, view.board.run.revision)
    csv_text = shared_output("challenge_csv", key, lambda: room.board_db.export_csv(run.id), max_entries=8)
    npz = shared_output("challenge_npz", key, lambda: room.board_db.export_npz(run.id), max_entries=8)
    a, b = st.columns(2)
    a.download_button("Export the board (CSV)", csv_text, file_name=f"challenge-{run.code}.csv", mime="text/csv",
                      icon=":material/table:", key=f"csv_{run.id}", on_click="ignore")
    b.download_button("Export the images (.npz)", npz, file_name=f"challenge-{run.code}.npz",
                      mime="application/octet-stream", icon=":material/download:", key=f"npz_{run.id}",
                      on_click="ignore")


def _submissions(run) -> None:
    view = board_view(run.id, include_hidden=True)
    if not view.board.entries:
        st.caption("No submission yet.")
        return
    _export(run, view)
    with st.container(height=360):
        for entry in sorted(view.board.entries, key=lambda e: -e.created):
            image, text, button = st.columns([1, 5, 1], vertical_alignment="center")
            if entry.id in view.thumbnails:
                image.image(view.thumbnails[entry.id], width=THUMBNAIL_PX // 2, output_format="PNG")
            hidden = " · :orange[hidden]" if entry.hidden else ""
            text.markdown(entry_caption(view, entry) + hidden)
            button.button("Show" if entry.hidden else "Hide", key=f"hide_{entry.id}",
                          icon=":material/visibility:" if entry.hidden else ":material/visibility_off:",
                          on_click=_act, args=(challenge_room().hide, entry.id, not entry.hidden))


def _runs() -> None:
    room = challenge_room()
    runs = room.board_db.runs()
    if not runs:
        st.caption("No challenge is running: start one above.")
    for run in runs:
        with st.container(border=True):
            head, code = st.columns([4, 1], vertical_alignment="center")
            head.markdown(f"**{plain(run.challenge.title)}** &nbsp; {state_badge(run.state)}")
            code.markdown(f"Code **{run.code}**")
            st.caption(f"Students join at {plain(join_url(run.code))}")
            buttons = st.columns(5)
            if run.state == "open":
                buttons[0].button("Pause", key=f"pause_{run.id}", icon=":material/pause:",
                                  on_click=_act, args=(room.set_state, run.id, "paused"))
            else:
                buttons[0].button("Open", key=f"open_{run.id}", icon=":material/play_arrow:",
                                  disabled=run.state == "ended",
                                  on_click=_act, args=(room.set_state, run.id, "open"))
            buttons[1].button("Reveal", key=f"reveal_{run.id}", icon=":material/visibility:",
                              disabled=run.state == "revealed", on_click=_act,
                              args=(room.set_state, run.id, "revealed"),
                              help="Close the submissions and show the measured answer and the lab's numbers.")
            buttons[2].button("Reset", key=f"reset_{run.id}", icon=":material/restart_alt:",
                              on_click=_act, args=(room.reset, run.id),
                              help="Clear the board and open it again (the cleared entries stay in the export).")
            buttons[3].button("End", key=f"end_{run.id}", icon=":material/stop:",
                              on_click=_act, args=(room.set_state, run.id, "ended"))
            buttons[4].link_button("Projector", f"/challenges?c={run.code}&view=projector&present=1",
                                   icon=":material/co_present:")
            _submissions(run)


def lecturer_view() -> None:
    st.title("Challenges")
    if not may_lead():
        st.info("Only the lecturer starts and runs challenges: enter the lecturer key in the sidebar, or join one "
                "with the code on the projector.", icon=":material/lock:")
        return
    if st.session_state.get("challenge_starting") is not None:
        _starting()
    if message := st.session_state.pop("admin_message", None):
        (st.success if message[0] == "success" else st.error)(plain(message[1]))
    _challenge_list()
    st.subheader("Running")
    _runs()


__all__ = ["lecturer_view"]
