"""The lecturer's view of the room (lecture mode, the lecturer only; drawn by the Models page): every queued and
running job of the server with its owner, Cancel for any of them, and a switch that pauses visitors' long jobs."""
from __future__ import annotations

import streamlit as st

from lab_pages._audience import current_visitor
from lab_pages._jobs import job_runner
from lab_pages._audience import in_lecture_mode

PAUSE_KEY = "room_pause_visitors"
PAUSED_LANE = "long"  # training, baseline fits and first-time attacks: what a room can pile up


def _is_lecturer() -> bool:
    return in_lecture_mode() and current_visitor().lecturer


def owner_text(job, me: str) -> str:
    """Who asked for ``job``, as the room view shows it: "you", "lecturer", or a visitor's short id."""
    def one(owner: str) -> str:
        if owner == me:
            return "you"
        return f"visitor {owner[:6]}" if owner in job.limited_owners else "lecturer"
    owners = [one(o) for o in job.owners] or ["nobody (stopping)"]
    return ", ".join(owners[:3]) + (f" +{len(owners) - 3} more" if len(owners) > 3 else "")


def _cancel(job) -> None:
    # Checked again in the callback: only a session that entered the key has these buttons, and only it may use them.
    if _is_lecturer():
        job_runner().cancel_all(job)


def _set_pause() -> None:
    if _is_lecturer():
        job_runner().pause_visitors(PAUSED_LANE, bool(st.session_state.get(PAUSE_KEY)))


@st.fragment(run_every=2.0)
def _room_jobs() -> None:
    runner, me = job_runner(), current_visitor().owner
    jobs = runner.jobs()
    if not jobs:
        st.caption("No job is queued or running.")
        return
    header = st.columns([2, 1, 5, 2, 1])
    for column, title in zip(header, ["Requested by", "Lane", "Job", "Progress", ""]):
        column.caption(title)
    for job in jobs:
        owner, lane, label, progress, cancel = st.columns([2, 1, 5, 2, 1], vertical_alignment="center")
        # st.text: plain text, never Markdown (a job's label holds model names that visitors chose).
        owner.text(owner_text(job, me))
        lane.text(job.lane)
        label.text(job.label)
        progress.text(f"running {100 * job.progress:.0f}%" if job.status == "running"
                      else f"queued, #{runner.position(job)}")
        cancel.button("Cancel", key=f"room_cancel_{job.number}", on_click=_cancel, args=(job,), icon=":material/stop:",
                      help="Stop this job for everyone who asked for it; nothing of it is saved.")


def room_view() -> None:
    """The room's jobs, for the lecturer in lecture mode (nothing for anyone else)."""
    if not _is_lecturer():
        return
    runner = job_runner()
    with st.expander("The room: every job of the server", expanded=True, icon=":material/groups:"):
        st.session_state[PAUSE_KEY] = runner.visitors_paused(PAUSED_LANE)  # the server's state, whoever changed it
        st.toggle("Pause visitors' training", key=PAUSE_KEY, on_change=_set_pause,
                  help="Visitors' new training, baseline fits and first-time attack computations are refused while it "
                       "is on (yours are not); what is queued goes on unless you cancel it below.")
        _room_jobs()
