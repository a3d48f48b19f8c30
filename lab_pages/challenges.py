"""Challenges page: live class challenges (robust_core.challenges). Three views of one run, chosen by the address:

- ``?c=CODE``: a student's (the task, their widget, their entry and rank, the public board);
- ``?c=CODE&view=projector&present=1``: the projector's full-screen board, redrawn by itself;
- no code: the lecturer's (start, pause, reveal, reset, end, hide, export) and, for a student, the runs to join.
"""
import streamlit as st

from lab_pages._challenges import CODE, challenge_room, linked_run, may_lead, state_badge
from lab_pages._text import plain
from lab_pages.challenge_admin import lecturer_view
from lab_pages.challenge_board import projector_view, student_board
from lab_pages.challenge_play import student_view


def _join(code: str) -> None:
    st.query_params["c"] = code.strip().upper()


def join_view() -> None:
    """For a visitor without a code: the open runs to join, or a field for the code on the projector."""
    st.title("Challenges")
    runs = [r for r in challenge_room().board_db.runs() if r.state != "ended"]
    if not runs:
        st.info("No challenge is running. When the lecturer starts one, its code shows on the projector.",
                icon=":material/emoji_events:")
    for run in runs:
        with st.container(border=True):
            text, button = st.columns([5, 1], vertical_alignment="center")
            text.markdown(f"**{plain(run.challenge.title)}** &nbsp; {state_badge(run.state)}")
            button.button("Join", key=f"join_{run.id}", on_click=_join, args=(run.code,), icon=":material/login:")
    typed = st.text_input("Or type the code on the projector", max_chars=4, key="join_code")
    if typed:
        if CODE.fullmatch(typed.strip()) and challenge_room().board_db.run(typed.strip()) is not None:
            _join(typed)
            st.rerun()
        st.error("No challenge has that code.")


def _main() -> None:
    from robust_core.challenges import ChallengeError

    try:
        run = linked_run()  # (opens the challenge database: a damaged one says so here, once)
    except ChallengeError as exc:
        st.error(f"{plain(exc)} Nothing was changed: the lecturer can move the file aside to start afresh.",
                 icon=":material/broken_image:")
        return
    view = st.query_params.get("view", "")
    if "c" in st.query_params and run is None:
        st.warning("No challenge has that code: it may have been typed wrong.", icon=":material/search_off:")
    if run is None:
        if may_lead():
            lecturer_view()
        else:
            join_view()
        return
    if view == "projector":
        projector_view(run)
        return
    student_view(run)
    st.divider()
    st.markdown("#### The board")
    student_board(run.id)
    if may_lead():
        st.page_link("lab_pages/challenges.py", label="Run the challenges (lecturer)", icon=":material/tune:")


_main()
