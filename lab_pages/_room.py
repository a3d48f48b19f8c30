"""The lecturer's view of the room (lecture mode, the lecturer only; drawn by the Models page): every queued and
running job of the room with its owner, Cancel for any of them, and a switch that pauses visitors' long jobs.

With replicas (``robust_core.room_ledger``), the jobs of this replica come from its runner and those of the others
from the room's ledger, marked with their replica; a Cancel of another replica's job is a request through the ledger,
which that replica carries out at its next heartbeat."""
from __future__ import annotations

import time
from dataclasses import dataclass

import streamlit as st

from lab_pages._audience import current_visitor
from lab_pages._jobs import job_runner
from lab_pages._audience import in_lecture_mode
from lab_pages._text import format_duration

PAUSE_KEY = "room_pause_visitors"
PAUSED_LANE = "long"  # training, baseline fits and first-time attacks: what a room can pile up


def _is_lecturer() -> bool:
    return in_lecture_mode() and current_visitor().lecturer


def owner_text(owners, visitors, me: str) -> str:
    """Who asked for a job (its ``owners``, of whom ``visitors`` are visitors), as the room view shows it: "you",
    "lecturer", or a visitor's short id."""
    visitors = set(visitors)

    def one(owner: str) -> str:
        if owner == me:
            return "you"
        return f"visitor {owner[:6]}" if owner in visitors else "lecturer"
    shown = [one(o) for o in owners] or ["nobody (stopping)"]
    return ", ".join(shown[:3]) + (f" +{len(shown) - 3} more" if len(shown) > 3 else "")


@dataclass
class RoomRow:
    """One line of the room view: a job of this replica (``job``) or of another one (``file``: its ledger record)."""
    key: str  # the Cancel button's widget key
    owners: str
    replica: str
    lane: str
    label: str
    state: str
    job: object = None
    file: str | None = None
    requested: bool = False  # another replica's job whose cancel request waits for that replica


def _strings(value) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _since(start, now: float) -> str:
    return format_duration(max(0.0, now - start)) if isinstance(start, (int, float)) else "—"


def room_rows(runner, me: str, *, elsewhere: bool = True) -> list[RoomRow]:
    """The room's jobs: this runner's, running then queued, then (``elsewhere``) those its ledger records for the other
    replicas (read from files any replica wrote: every field is checked, and a label is only ever shown as plain
    text)."""
    ledger, mono, wall = runner.ledger, time.monotonic(), time.time()
    here = f"{ledger.replica_id} (this one)" if ledger is not None else ""
    rows = []
    for job in runner.jobs():
        state = (f"running {100 * job.progress:.0f}%, {_since(job.started, mono)}" if job.status == "running"
                 else f"queued, #{runner.position(job)}, {_since(job.submitted, mono)}")
        rows.append(RoomRow(key=f"room_cancel_{job.number}", owners=owner_text(job.owners, job.limited_owners, me),
                            replica=here, lane=job.lane, label=job.label, state=state, job=job))
    if ledger is None or not elsewhere:
        return rows
    records = [r for r in ledger.jobs() if r.get("ledger") != ledger.name]
    requested = ledger.cancel_requests()

    def number(record) -> int:
        return record.get("number", -1) if isinstance(record.get("number"), int) else -1

    def order(record):
        return (str(record.get("replica")), record.get("status") != "running", number(record))
    for record in sorted(records, key=order):
        replica = str(record.get("replica", "?"))
        if record.get("file") in requested:
            state = f"cancel requested on replica {replica}"
        elif record.get("status") == "running":
            progress = record.get("progress")
            progress = progress if isinstance(progress, (int, float)) else 0.0
            state = f"running {100 * progress:.0f}%, {_since(record.get('started_at'), wall)}"
        else:
            ahead = sum(r.get("ledger") == record.get("ledger") and r.get("lane") == record.get("lane")
                        and r.get("status") == "queued" and number(r) < number(record) for r in records)
            state = f"queued, #{ahead + 1}, {_since(record.get('queued_at'), wall)}"
        rows.append(RoomRow(key=f"room_cancel_{record['file']}", replica=replica, lane=str(record.get("lane", "")),
                            owners=owner_text(_strings(record.get("owners")), _strings(record.get("visitors")), me),
                            label=str(record.get("label", "")), state=state, file=record["file"],
                            requested=record.get("file") in requested))
    return rows


def _cancel(job) -> None:
    # Checked again in the callback: only a session that entered the key has these buttons, and only it may use them.
    if _is_lecturer():
        job_runner().cancel_all(job)


def _cancel_elsewhere(file: str) -> None:
    if _is_lecturer() and job_runner().ledger is not None:
        job_runner().ledger.request_cancel(file, by="the lecturer")


def _set_pause() -> None:
    if _is_lecturer():
        job_runner().pause_visitors(PAUSED_LANE, bool(st.session_state.get(PAUSE_KEY)))


@st.fragment(run_every=2.0)
def _room_jobs() -> None:
    runner, me = job_runner(), current_visitor().owner
    try:
        rows = room_rows(runner, me)
    except OSError as exc:  # the shared store unreachable, its lock held too long: this replica's jobs at least
        st.warning(f"The other replicas' jobs cannot be read now ({type(exc).__name__}); this replica's only.")
        rows = room_rows(runner, me, elsewhere=False)
    if not rows:
        st.caption("No job is queued or running.")
        return
    replicas = runner.ledger is not None
    widths = [2, 2, 1, 5, 2, 1] if replicas else [2, 1, 5, 2, 1]
    header = st.columns(widths)
    titles = ["Requested by", *(["Replica"] if replicas else []), "Lane", "Job", "Progress", ""]
    for column, title in zip(header, titles):
        column.caption(title)
    for row in rows:
        columns = st.columns(widths, vertical_alignment="center")
        owner, lane, label, progress, cancel = columns[:1] + columns[-4:]
        # st.text: plain text, never Markdown (a job's label holds model names that visitors chose).
        owner.text(row.owners)
        if replicas:
            columns[1].text(row.replica)
        lane.text(row.lane)
        label.text(row.label)
        progress.text(row.state)
        if row.job is not None:
            cancel.button("Cancel", key=row.key, on_click=_cancel, args=(row.job,), icon=":material/stop:",
                          help="Stop this job for everyone who asked for it; nothing of it is saved.")
        else:
            cancel.button("Cancel", key=row.key, on_click=_cancel_elsewhere, args=(row.file,), icon=":material/stop:",
                          disabled=row.requested,
                          help="Ask its replica to stop this job for everyone who asked for it (within seconds); "
                               "nothing of it is saved.")


def room_view() -> None:
    """The room's jobs, for the lecturer in lecture mode (nothing for anyone else)."""
    if not _is_lecturer():
        return
    runner = job_runner()
    title = "every job of every replica" if runner.ledger is not None else "every job of the server"
    with st.expander(f"The room: {title}", expanded=True, icon=":material/groups:"):
        st.session_state[PAUSE_KEY] = runner.visitors_paused(PAUSED_LANE)  # the server's state, whoever changed it
        st.toggle("Pause visitors' training", key=PAUSE_KEY, on_change=_set_pause,
                  help="Visitors' new training, baseline fits and first-time attack computations are refused while it "
                       "is on (yours are not); what is queued goes on unless you cancel it below.")
        _room_jobs()
