"""A lecture as data: the steps of ``benchmarks/scenarios/*.toml``, played by a room of students, one burst per step.

    ROBUST_DATA_DIR=../shared/data python -m benchmarks.load_test --scenario benchmarks/scenarios/lecture.toml \
        --clients protocol --students 30 60 --probes 2

Every student keeps one tab (one Streamlit session) for the whole lecture, as a laptop does: the first step downloads
the page and opens the WebSocket, each later step is the script run a click on a lecture card asks for. All students
start a step together and the next step starts when the whole room is done with it. Reported per step: the students'
p50 / p95 time from the request until what the step's ``ready`` names has arrived, errors, and the server's CPU
seconds per view (its CPU time over the step divided by the views served), the figure that says how many students
one core can serve.
"""
from __future__ import annotations

import asyncio
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
# A ready condition in Streamlit's element names -> the browser's element (data-testid) that shows it.
BROWSER_SELECTORS = {"page_link": '[data-testid="stPageLink-NavLink"]', "plotly_chart": '[data-testid="stPlotlyChart"]',
                     "alert": '[data-testid="stAlert"]', "dataframe": '[data-testid="stDataFrame"]',
                     "imgs": '[data-testid="stImage"]', "button": '[data-testid="stButton"]'}


class ScenarioError(ValueError):
    """A scenario file that cannot be played: the message names the file and the step."""


@dataclass(frozen=True)
class Step:
    view: str  # "home" or a lecture path's name
    page: str  # the URL path ("" for home)
    params: dict
    ready: tuple[str, ...]
    click: str | None = None
    ready_after_click: tuple[str, ...] = ()


def load_scenario(path: str | Path) -> tuple[str, list[Step]]:
    """(description, steps) of a scenario file; :class:`ScenarioError` for an unreadable file, an unknown view or
    an empty ``ready``."""
    from robust_core.lectures import lecture_paths

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path.name}: unreadable ({exc})") from exc
    paths, errors = lecture_paths()
    by_name = {p.name: p for p in paths}
    steps = []
    for number, raw in enumerate(data.get("step", []), start=1):
        where = f"{path.name}, step {number}"
        view = raw.get("view")
        ready = tuple(raw.get("ready", ()))
        if not ready or not all(isinstance(r, str) and r for r in ready):
            raise ScenarioError(f"{where}: 'ready' must name at least one element or text:<words>")
        unknown = [r for r in ready if not r.startswith("text:") and r not in BROWSER_SELECTORS]
        if unknown:
            raise ScenarioError(f"{where}: unknown ready condition(s) {unknown}; known: {sorted(BROWSER_SELECTORS)} "
                                "and text:<words>")
        if view == "home":
            page, params = "", {}
        elif view in by_name:
            page, params = by_name[view].page, dict(by_name[view].params)
        else:
            broken = [e for e in errors if e.startswith(f"{view}.toml")]
            raise ScenarioError(f"{where}: no lecture path named {view!r}"
                                + (f" ({broken[0]})" if broken else f"; there are {sorted(by_name)}"))
        steps.append(Step(view, page, params, ready, raw.get("click"), tuple(raw.get("ready_after_click", ()))))
    if not steps:
        raise ScenarioError(f"{path.name}: no [[step]]")
    return str(data.get("description", path.stem)), steps


def satisfied(session, ready: tuple[str, ...]) -> bool:
    """Whether a protocol session's last run shows everything ``ready`` names."""
    texts = session.texts() + [e.alert.body for kind, e in session.elements if kind == "alert"]
    return all(any(cond[5:] in t for t in texts) if cond.startswith("text:") else session.has(cond) for cond in ready)


async def protocol_step(session, base: str, step: Step, *, first: bool, timeout_s: float) -> dict:
    """One student's step in its own tab; {"s": seconds} or {"error": text}."""
    t0 = time.monotonic()
    try:
        if first:
            await session.download_page(step.page)
            await session.connect()
        await session.open(step.page, step.params, timeout_s=timeout_s)
        await session.wait_for(lambda els: satisfied(session, step.ready), timeout_s=timeout_s)
        if step.click:
            await session.click(step.click, timeout_s=timeout_s)
            await session.wait_for(lambda els: satisfied(session, step.ready_after_click or step.ready),
                                   timeout_s=timeout_s)
        if session.exceptions():
            return {"error": f"exception(s) on the page: {session.exceptions()[:2]}"}
        return {"s": time.monotonic() - t0}
    except Exception as exc:  # every failure is a finding of the load test
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}


async def browser_step(page, base: str, step: Step, *, timeout_s: float) -> dict:
    """A Chromium student's step: the address of the view, until every ready element is visible."""
    from urllib.parse import urlencode

    t0 = time.monotonic()
    try:
        await page.goto(f"{base}/{step.page}" + (f"?{urlencode(step.params)}" if step.params else ""))
        for cond in step.ready:
            target = (page.get_by_text(cond[5:]).first if cond.startswith("text:")
                      else page.locator(BROWSER_SELECTORS[cond]).first)
            await target.wait_for(state="visible", timeout=timeout_s * 1000)
        if step.click:
            await page.get_by_role("button", name=step.click, exact=True).click()
            for cond in step.ready_after_click or step.ready:
                target = (page.get_by_text(cond[5:]).first if cond.startswith("text:")
                          else page.locator(BROWSER_SELECTORS[cond]).first)
                await target.wait_for(state="visible", timeout=timeout_s * 1000)
        shown = await page.locator('[data-testid="stException"]').count()
        return {"error": f"{shown} exception(s) on the page"} if shown else {"s": time.monotonic() - t0}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]} at {page.url}"}


def settle(server_cpu, *, quiet_s: float = 1.0, busy_cpu_s: float = 0.05, timeout_s: float = 300) -> None:
    """Wait until the server has spent less than ``busy_cpu_s`` of CPU over ``quiet_s``: work a step left running in
    the job runner (a gallery crafted after its page was shown) is not counted in the next step's views."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = server_cpu()
        time.sleep(quiet_s)
        if server_cpu() - before < busy_cpu_s:
            return


async def lecture(base: str, steps: list[Step], n: int, *, probes: int = 0, timeout_s: float = 120,
                  server_cpu=None, settle_between: bool = False) -> list[dict]:
    """``n`` protocol students (and ``probes`` Chromium ones) walk ``steps``, one burst per step.

    ``server_cpu()``: the server's CPU seconds so far, read around each step (with ``settle_between``, once the server
    is quiet: see :func:`settle`). One record per step: the view, each kind of student's times and errors, and the
    server's CPU seconds over the step."""
    from benchmarks.streamlit_client import ProtocolSession

    sessions = [ProtocolSession(base) for _ in range(n)]
    records = []
    playwright = browser = None
    pages = []
    try:
        if probes:
            from playwright.async_api import async_playwright

            from tests.browser import CHROMIUM, CHROMIUM_ARGS

            playwright = await async_playwright().start()
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(probes):
                context = await browser.new_context(viewport={"width": 1280, "height": 720})
                pages.append(await context.new_page())
        for number, step in enumerate(steps):
            if settle_between and server_cpu:
                await asyncio.to_thread(settle, server_cpu)
            cpu0 = server_cpu() if server_cpu else float("nan")
            t0 = time.monotonic()
            outcomes = await asyncio.gather(
                *(protocol_step(s, base, step, first=number == 0, timeout_s=timeout_s) for s in sessions),
                *(browser_step(p, base, step, timeout_s=timeout_s) for p in pages))
            records.append({"view": step.view, "protocol": outcomes[:n], "browser": outcomes[n:],
                            "wall_s": time.monotonic() - t0,
                            "server_cpu_s": (server_cpu() - cpu0) if server_cpu else float("nan")})
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        if browser is not None:
            await browser.close()
        if playwright is not None:
            await playwright.stop()
    return records


def step_summary(record: dict, quantile) -> dict:
    """p50 / p95 and errors of each kind of student, and the server's CPU per view, for one step's record."""
    out = {"view": record["view"], "wall_s": record["wall_s"], "server_cpu_s": record["server_cpu_s"]}
    views = len(record["protocol"]) + len(record["browser"])
    out["server_cpu_per_view_s"] = record["server_cpu_s"] / views if views else float("nan")
    for kind in ("protocol", "browser"):
        times = [o["s"] for o in record[kind] if "s" in o]
        if record[kind]:
            out[kind] = {"p50_s": quantile(times, 0.5), "p95_s": quantile(times, 0.95),
                         "errors": [o["error"] for o in record[kind] if "error" in o]}
    return out


__all__ = ["BROWSER_SELECTORS", "SCENARIOS", "ScenarioError", "Step", "lecture", "load_scenario", "satisfied", "settle",
           "step_summary"]
