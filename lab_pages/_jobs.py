"""Heavy work through the server's one job runner (robust_core.jobs): queueing a page's work under the visitors'
limits, and the one widget every page shows for it (progress, queue position, Cancel, failures)."""
from __future__ import annotations

import streamlit as st

from lab_pages._audience import current_visitor
from lab_pages._audience import in_lecture_mode
from lab_pages._text import plain


@st.cache_resource(show_spinner=False)
def job_runner():
    """The server's one job runner: heavy work of every session waits in its queue, identical requests run once.

    Two lanes, one worker each (2 cores): "long" for training and first-time attack computations (minutes: one at a
    time, a second would only halve the first's speed), "short" for morphs (seconds), so a student's morph never
    waits behind a classmate's training while a room's simultaneous morphs run one after the other."""
    from robust_core.jobs import JobRunner
    from robust_core.room_ledger import replica_ledger
    from robust_core.store import resolve_store_dir

    return JobRunner(workers={"long": 1, "short": 1}, ledger=replica_ledger(resolve_store_dir()))


def visitor_work_error(work) -> str | None:
    """Why this browser may not ask for ``work`` (a :class:`robust_core.access.Work`), or None: for the widgets,
    which say it before the button is pressed; :func:`submit_job` checks it again."""
    from robust_core.access import work_error

    return work_error(work, lecture=in_lecture_mode(), lecturer=current_visitor().lecturer)


def submit_job(key: str, fn, *, label: str, lane: str = "long", work=None, container=None):
    """Queue ``fn`` in the server's runner for this browser (or join the identical job), or show why not in
    ``container`` (default: the page) and return None.

    Every page queues its work here, so the limits hold whatever the browser sent (a disabled button can still be
    "clicked" by a forged request): ``work`` (a :class:`robust_core.access.Work`) is checked against the visitors'
    limits and the machine's memory before anything is queued, and in lecture mode the runner holds visitors, not
    the lecturer, to its quotas (:class:`robust_core.jobs.QuotaExceeded`)."""
    from robust_core.jobs import QuotaExceeded

    container = st if container is None else container
    visitor, lecture = current_visitor(), in_lecture_mode()
    problem = visitor_work_error(work) if work is not None else None
    if problem:
        container.warning(problem, icon=":material/block:")
        return None
    try:
        return job_runner().submit(key, fn, owner=visitor.owner, label=label, lane=lane,
                                   limited=lecture and not visitor.lecturer)
    except QuotaExceeded as exc:
        container.warning(str(exc), icon=":material/hourglass:")
    except RuntimeError as exc:  # the lane's queue is full, for everybody
        container.error(f"Not queued: {exc}.")
    return None


def job_or_retry(key: str, *, label: str, again: str):
    """The runner's job of ``key``, or None when there is none yet. A failed or cancelled one is said (``label``:
    what it was doing, as plain text) and the page stops until the visitor clicks ``again``; then None: submit anew."""
    job = job_runner().get(key)
    if job is not None and job.status in ("failed", "cancelled"):
        st.warning(f"{plain(label)}: " + (f"failed ({plain(job.error)})." if job.status == "failed" else "cancelled."),
                   icon=":material/error:")
        if not st.button(again, key=job_widget_key("again", key)):
            st.stop()
        return None
    return job


def progress_line(label: str, fraction: float, elapsed: float) -> str:
    """Progress text with an ETA only once it means something: a few seconds and percent in (the attacks' progress
    counts work against its worst case, so the ETA errs long)."""
    text = f"{label}: {100 * fraction:.0f}% · elapsed {elapsed:.0f} s"
    if 0.03 <= fraction < 1 and elapsed >= 3:
        text += f" · about {elapsed / fraction - elapsed:.0f} s left"
    return text


def _job_line(job, runner) -> str:
    import time

    if job.status == "queued":
        return f"**{plain(job.label)}**: waiting, position {runner.position(job)} in the queue"
    line = progress_line(f"**{plain(job.label)}**", job.progress, time.monotonic() - (job.started or time.monotonic()))
    return f"{line} · {plain(job.message)}" if job.message else line


def job_widget_key(prefix: str, job_key: str) -> str:
    """The key of a widget about the job ``job_key``: Streamlit writes widget keys into the page's HTML (as CSS
    classes), and job keys hold the store's folder, which visitors must not see."""
    import hashlib

    return f"{prefix}_{hashlib.sha256(job_key.encode()).hexdigest()[:16]}"


@st.fragment(run_every=1.0)
def job_status(job_keys: list[str], *, section: str) -> None:
    """Progress of the jobs ``job_keys`` (position in the queue, progress, Cancel for the requester), redrawn every
    second on its own; the whole page reruns once they have all finished, to show their results.

    ``section`` names the part of the page that draws it: one job can be shown by two sections at once (the Attack
    page's curves and its comparison both wait on PGD of the same model), and each needs its own Cancel button."""
    runner, visitor = job_runner(), current_visitor()
    jobs = [j for j in (runner.get(k) for k in job_keys) if j is not None]
    if all(j.status in ("done", "failed", "cancelled") for j in jobs):
        st.rerun(scope="app")
    for job in jobs:
        if job.status not in ("queued", "running"):
            continue
        line, cancel = st.columns([5, 1], vertical_alignment="center")
        line.progress(job.progress, text=_job_line(job, runner))
        if visitor.owner in job.owners:
            cancel.button("Cancel", key=job_widget_key(f"cancel_{section}", job.key), icon=":material/stop:",
                          on_click=runner.cancel, args=(job, visitor.owner),
                          help="Withdraw your request; nothing is saved if nobody else wants it.")
        else:
            cancel.caption("requested by another visitor")

def run_job(key: str, fn, *, label: str, lane: str = "long", wait_s: float = 2.0):
    """Submit ``fn`` to the server's runner under ``key`` (or reuse its finished result); returns the job when done,
    else shows its progress with Cancel and stops the page (the status fragment reruns it when the job ends)."""
    job = job_or_retry(key, label=label, again="Run it again")
    if job is None:
        job = submit_job(key, fn, label=label, lane=lane)
        if job is None:  # refused (a quota, a full queue): submit_job said why
            st.stop()
        job.wait(wait_s)
    if job.status in ("queued", "running"):
        job_status([job.key], section="photo")
        st.stop()
    return job


def job_panel(container, requests: list[dict], *, button: str, section: str, icon: str = ":material/bolt:",
              primary: bool = False) -> list:
    """The one job widget of a section whose results are computed on request: what failed or was cancelled, the
    button that queues ``requests`` (each a dict: ``key``, ``fn``, ``label``, ``work`` and optionally ``lane``), the
    reason it is disabled for this visitor, and the progress of those already queued. Returns the requests' jobs
    still queued or running (a page may draw less while they are)."""
    runner = job_runner()
    refusal = next((r for q in requests if q.get("work") is not None and (r := visitor_work_error(q["work"]))), None)
    if refusal:
        container.caption(refusal)
    if container.button(button, type="primary" if primary else "secondary", icon=icon, disabled=refusal is not None,
                        key=job_widget_key(f"compute_{section}", "|".join(q["key"] for q in requests))):
        for q in requests:
            if submit_job(q["key"], q["fn"], label=q["label"], lane=q.get("lane", "long"), work=q.get("work"),
                          container=container) is None:
                break  # refused (a quota, a full queue): submit_job said why
    jobs = {q["key"]: (q, runner.get(q["key"])) for q in requests}
    for q, job in jobs.values():
        if job is not None and job.status == "failed":
            container.error(f"{plain(q['label'])} failed: {plain(job.error)}. Nothing was cached.",
                            icon=":material/error:")
        elif job is not None and job.status == "cancelled":
            container.info(f"{plain(q['label'])}: cancelled. Nothing was cached: results are saved only once a "
                           "computation is complete.", icon=":material/stop_circle:")
    active = [job for _, job in jobs.values() if job is not None and job.status in ("queued", "running")]
    if active and container is st:
        job_status([j.key for j in active], section=section)
    elif active:
        with container:  # (the fragment draws where the panel is)
            job_status([j.key for j in active], section=section)
    return active
