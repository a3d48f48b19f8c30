"""A room of students on one server: N students open a lecture path, drag ε, switch model and morph a digit.

    ROBUST_DATA_DIR=../shared/data python -m benchmarks.load_test --students 1 10 30 60                 # browsers
    ROBUST_DATA_DIR=../shared/data python -m benchmarks.load_test --clients protocol --students 1 10 30 60

One dashboard (``streamlit run app.py``, a fresh store with the shipped models and their shipped evaluation
results), all students at once, driven concurrently by asyncio. Two kinds of student:

- ``--clients browser`` (default): one headless Chromium (Debian's, through Playwright), one browser context per
  student. On this 2-core machine the N renderers share the cores with the server, so the times measure 2 cores
  doing the work of N laptops *and* the server.
- ``--clients protocol``: each student is a :class:`streamlit_client.ProtocolSession`, which asks of the server
  exactly what a browser asks (the page, its static files, the websocket conversation, fragment reruns, the
  Morph click) without rendering: the times are the server's, as students on their own laptops would see them
  less their laptop's drawing time. ``--probes K`` adds K real Chromium students to that room and reports
  them apart: what a real browser on this machine sees while the server serves the room.

Each student:
  0. opens the address the lecturer gives (the home page and its lecture paths): home-ready time, from the first
     request (the browser downloads Streamlit's scripts here, ~2.3 MB, then keeps them: they are immutable);
  1. clicks the "ε collapse" lecture path (the Attack page, standard vs PGD-AT, 1,000 images): page-ready time
     = from the click until the page's title and the ε-slider figure are shown and no script run is pending
     (protocol: until the run finished with the figure in it);
  2. drags the ε slider to 0.3 (client-side in the browser: no server work; protocol students skip it);
  3. switches model: the same path with the GFA (deep) model instead of PGD-AT (a link with other models);
  4. opens the "Draw a 4, morph it into a 9" path and clicks Morph: morph time = until the "Read by the others"
     verdicts are shown.
Reported per N: page-ready p50 / p95, switch p50, morph p50 / p95, errors (exceptions shown or timeouts), the
server's resident memory before and after (RSS), its CPU time and the CPU time of everything else on the machine
(browsers). Targets on 2 cores: 30 students, p50 < 2 s, p95 < 5 s, no errors, memory growth < 100 MB.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


from robust_core.lectures import lecture_paths
from tests.browser import CHROMIUM, CHROMIUM_ARGS, dashboard

PAGE_TIMEOUT_S = 120
SHOTS = os.environ.get("LOAD_TEST_SHOTS")  # a folder: a screenshot of each student's page when something fails


def server_pid(port: int) -> int | None:
    """The streamlit process listening on ``port`` (from /proc: its command line names the port)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"streamlit" in b" ".join(cmd) and str(port).encode() in cmd:
            return int(proc.name)
    return None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_s() -> float:
    """CPU seconds all processes of this machine spent (user + system, from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return (int(fields[0]) + int(fields[1]) + int(fields[2])) / os.sysconf("SC_CLK_TCK")


SWITCHED_MODEL = "79c6727159629e65"  # the shipped GFA (deep) CNN: step 3 shows it instead of PGD-AT


def switched(params: dict) -> dict:
    models = params["models"].split(",")
    return {**params, "models": ",".join([models[0], SWITCHED_MODEL])}


def query(params: dict) -> str:
    from urllib.parse import urlencode

    return "?" + urlencode(params)


async def wait_ready(page, *, selector: str, timeout_s: float = PAGE_TIMEOUT_S) -> None:
    """The page's own content is shown and no script run is pending (Streamlit's status widget is gone)."""
    await page.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout_s * 1000)
    await page.wait_for_selector(selector, timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        if await page.locator('[data-testid="stStatusWidget"]').count() == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 0.5:  # a page can rerun right after a run (a gallery just crafted)
                return
        else:
            quiet_since = None
        await asyncio.sleep(0.05)
    raise TimeoutError("the page kept running")


async def drag_eps(page, fraction: float) -> str:
    """Drag the ε slider to ``fraction`` of its rail; the figure's title afterwards. Retried when the figure is
    redrawn under the mouse (another visitor's gallery, shared by the server, arriving): the user would just drag
    again."""
    from playwright.async_api import Error

    for attempt in range(3):
        try:
            await page.locator(".slider-rail-rect").first.scroll_into_view_if_needed()
            grip = await page.locator(".slider-grip-rect").first.bounding_box()
            rail = await page.locator(".slider-rail-rect").first.bounding_box()
            if grip is None or rail is None:  # the figure is being redrawn: not on screen this instant
                raise Error("the slider is being redrawn")
            await page.mouse.move(grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2)
            await page.mouse.down()
            await page.mouse.move(rail["x"] + rail["width"] * fraction, grip["y"] + grip["height"] / 2, steps=5)
            await page.mouse.up()
            await asyncio.sleep(0.5)
            title = await page.locator(".js-plotly-plot").first.locator(".gtitle").first.text_content()
            if (title and not title.startswith("ε = 0.000")) or attempt == 2:
                return title
            # The handle did not move: the figure was redrawn between the press and the release (a slow machine,
            # a gallery arriving). A student would drag again.
        except Error:
            if attempt == 2:
                raise
        await wait_ready(page, selector=".js-plotly-plot .slider-rail-rect")
    return ""


async def student(browser, base: str, paths: dict, index: int, results: list) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 720})
    page = await context.new_page()
    record = {"student": index, "errors": []}
    try:
        collapse, morph = paths["01_eps_collapse"], paths["03_morph_4_to_9"]
        t0 = time.monotonic()
        await page.goto(base)
        await wait_ready(page, selector='[data-testid="stPageLink-NavLink"]')
        record["home_ready_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        card = page.locator(f'[data-testid="stPageLink-NavLink"][href*="{collapse.page}"]').first
        await card.click()
        try:
            await wait_ready(page, selector=".js-plotly-plot .slider-rail-rect", timeout_s=PAGE_TIMEOUT_S / 2)
        except Exception:  # the click changed nothing visible: a student clicks again, and we count it
            seen = " ".join((await page.locator('[data-testid="stMain"]').inner_text(timeout=5000)).split())[:200]
            record["lost_clicks"] = record.get("lost_clicks", 0) + 1
            record["notes"] = f"first click on the card lost at {page.url}; page showed: {seen}"
            await page.goto(f"{base}/{collapse.page}{query(collapse.params)}")
            await wait_ready(page, selector=".js-plotly-plot .slider-rail-rect")
        record["page_ready_s"] = time.monotonic() - t0
        title = await drag_eps(page, 0.75)
        if not title or title.startswith("ε = 0.000"):
            record["errors"].append("the slider did not move the figure")
        t0 = time.monotonic()
        await page.goto(f"{base}/{collapse.page}{query(switched(collapse.params))}")
        await wait_ready(page, selector=".js-plotly-plot .slider-rail-rect")
        record["switch_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        await page.goto(f"{base}/{morph.page}{query(morph.params)}")
        await wait_ready(page, selector='button:has-text("Morph")')
        record["page_ready_s_morph_page"] = time.monotonic() - t0
        t0 = time.monotonic()
        await page.get_by_role("button", name="Morph", exact=True).click()
        await page.get_by_text("Read by the others").first.wait_for(timeout=PAGE_TIMEOUT_S * 1000)
        record["morph_s"] = time.monotonic() - t0
        shown = await page.locator('[data-testid="stException"]').count()
        if shown:
            record["errors"].append(f"{shown} exception(s) on the page")
    except Exception as exc:  # every failure is a finding of the load test
        try:  # what the student saw: says whether the page hung, showed an error or waited on something
            seen = " ".join((await page.locator('[data-testid="stMain"]').inner_text(timeout=5000)).split())[:300]
        except Exception:
            seen = "(page unreadable)"
        record["errors"].append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]} at {page.url}; "
                                f"page shows: {seen}")
        if SHOTS:
            await page.screenshot(path=str(Path(SHOTS) / f"student-{index}.png"))
    finally:
        results.append(record)
        await context.close()


async def protocol_student(base: str, paths: dict, index: int, results: list) -> None:
    from benchmarks.streamlit_client import ProtocolSession

    session = ProtocolSession(base)
    record = {"student": index, "errors": [], "kind": "protocol"}
    try:
        collapse, morph = paths["01_eps_collapse"], paths["03_morph_4_to_9"]
        t0 = time.monotonic()
        await session.download_page("")
        await session.connect()
        await session.open("", {}, timeout_s=PAGE_TIMEOUT_S)
        await session.wait_for(lambda els: session.has("page_link"), timeout_s=PAGE_TIMEOUT_S)
        record["home_ready_s"] = time.monotonic() - t0
        t0 = time.monotonic()  # the click on the lecture path's card: a script run of its page (no page download)
        await session.open(collapse.page, collapse.params, timeout_s=PAGE_TIMEOUT_S)
        await session.wait_for(lambda els: session.has("plotly_chart"), timeout_s=PAGE_TIMEOUT_S)
        record["page_ready_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        await session.open(collapse.page, switched(collapse.params), timeout_s=PAGE_TIMEOUT_S)
        await session.wait_for(lambda els: session.has("plotly_chart"), timeout_s=PAGE_TIMEOUT_S)
        record["switch_s"] = time.monotonic() - t0
        await session.open(morph.page, morph.params, timeout_s=PAGE_TIMEOUT_S)
        t0 = time.monotonic()
        await session.click("Morph", timeout_s=PAGE_TIMEOUT_S)
        await session.wait_for(lambda els: any("Read by the others" in t for t in session.texts()),
                               timeout_s=PAGE_TIMEOUT_S)
        record["morph_s"] = time.monotonic() - t0
        if session.exceptions():
            record["errors"].append(f"exception(s) on the page: {session.exceptions()[:2]}")
    except Exception as exc:  # every failure is a finding of the load test
        record["errors"].append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
    finally:
        results.append(record)
        await session.close()


async def room(base: str, n: int, *, clients: str = "browser", probes: int = 0) -> list[dict]:
    """``n`` students of kind ``clients`` at once, plus ``probes`` Chromium students (protocol rooms only)."""
    from playwright.async_api import async_playwright

    paths = {p.name: p for p in lecture_paths()[0]}
    results: list[dict] = []
    browsers = n if clients == "browser" else probes
    tasks = [protocol_student(base, paths, i, results) for i in range(n)] if clients == "protocol" else []
    if not browsers:
        await asyncio.gather(*tasks)
        return results
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            await asyncio.gather(*tasks, *(student(browser, base, paths, n + i if tasks else i, results)
                                           for i in range(browsers)))
        finally:
            await browser.close()
    for r in results:
        r.setdefault("kind", "browser")
    return results


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1] if len(values) > 1 else values[0]


def summarise(results: list[dict]) -> dict:
    home = [r["home_ready_s"] for r in results if "home_ready_s" in r]
    ready = [r["page_ready_s"] for r in results if "page_ready_s" in r]
    switch = [r["switch_s"] for r in results if "switch_s" in r]
    morphs = [r["morph_s"] for r in results if "morph_s" in r]
    return {"home_ready_p50_s": quantile(home, 0.5), "home_ready_p95_s": quantile(home, 0.95),
            "page_ready_p50_s": quantile(ready, 0.5), "page_ready_p95_s": quantile(ready, 0.95),
            "switch_p50_s": quantile(switch, 0.5), "morph_p50_s": quantile(morphs, 0.5),
            "morph_p95_s": quantile(morphs, 0.95),
            "errors": [e for r in results for e in r["errors"]],
            "lost_clicks": sum(r.get("lost_clicks", 0) for r in results),
            "notes": [r["notes"] for r in results if "notes" in r]}


def run(counts: list[int], store_dir: str | None = None, *, clients: str = "browser", probes: int = 0) -> list[dict]:
    """One server for all counts (as in a lecture, it warms up with the first students); a summary per count."""
    store_dir = store_dir or tempfile.mkdtemp(prefix="load-store-")
    summaries = []
    with dashboard(env={"ROBUST_STORE_DIR": store_dir, "ROBUST_SHIPPED_MODELS": "1"}, timeout_s=120) as base:
        port = int(base.rsplit(":", 1)[1])
        pid = server_pid(port)
        for n in counts:
            rss0, cpu0, machine0, t0 = rss_mb(pid), cpu_s(pid), machine_cpu_s(), time.monotonic()
            results = asyncio.run(room(base, n, clients=clients, probes=probes))
            server_cpu = cpu_s(pid) - cpu0
            summary = {"students": n, "clients": clients, **summarise([r for r in results if r["kind"] == clients]),
                       "rss_before_mb": rss0, "rss_after_mb": rss_mb(pid), "server_cpu_s": server_cpu,
                       "other_cpu_s": machine_cpu_s() - machine0 - server_cpu, "wall_s": time.monotonic() - t0}
            if clients == "protocol" and probes:
                summary["probes"] = {"browsers": probes, **summarise([r for r in results if r["kind"] == "browser"])}
            summaries.append(summary)
            print(json.dumps(summary), flush=True)
    return summaries


@contextmanager
def served(store_dir: str, replicas: int):
    """(base URL, the Streamlit processes' pids, their own URLs): one dashboard, or ``replicas`` of them behind nginx
    (``python -m robust_core.serve``), on ``store_dir`` with the shipped models."""
    env = {"ROBUST_STORE_DIR": store_dir, "ROBUST_SHIPPED_MODELS": "1"}
    if not replicas:
        with dashboard(env=env, timeout_s=120) as base:
            yield base, [server_pid(int(base.rsplit(":", 1)[1]))], [base]
        return
    from tests.browser import REPO, free_port

    first, port = free_port(), free_port()  # the replicas take first .. first + N - 1: checked free by serve
    process = subprocess.Popen([sys.executable, "-m", "robust_core.serve", "--replicas", str(replicas),
                                "--first-port", str(first), "--port", str(port), "--store", store_dir],
                               cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        said, deadline = "", time.monotonic() + 300
        while "Robustness Lab:" not in said:
            line = process.stdout.readline()
            if (not line and process.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"robust_core.serve did not start: {said[-2000:]}")
            said += line
        yield (f"http://127.0.0.1:{port}", [server_pid(first + i) for i in range(replicas)],
               [f"http://127.0.0.1:{first + i}" for i in range(replicas)])
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def run_scenario(counts: list[int], scenario: str, *, probes: int = 0, store_dir: str | None = None,
                 replicas: int = 0, warm: bool = False) -> list[dict]:
    """One server (a fresh store, or ``store_dir``; ``replicas`` > 0: that many behind nginx) for all counts; per
    count, the room walks the scenario's steps. Server CPU and memory are the Streamlit processes' sums."""
    from benchmarks.scenario import lecture, load_scenario, step_summary

    description, steps = load_scenario(scenario)
    store_dir = store_dir or tempfile.mkdtemp(prefix="load-store-")
    summaries = []
    with served(store_dir, replicas) as (base, pids, replica_urls):
        def server_cpu() -> float:
            return sum(cpu_s(pid) for pid in pids)

        def server_rss() -> float:
            return sum(rss_mb(pid) for pid in pids)

        if warm:  # the lecturer walks the paths before the room arrives (on every replica): first loads and work
            for url in replica_urls:
                asyncio.run(lecture(url, steps, 1))
        for n in counts:
            rss0 = server_rss()
            records = asyncio.run(lecture(base, steps, n, probes=probes, server_cpu=server_cpu))
            summary = {"students": n, "probes": probes, "replicas": replicas, "warm": warm, "scenario": description,
                       "rss_before_mb": rss0, "rss_after_mb": server_rss(),
                       "steps": [step_summary(r, quantile) for r in records]}
            summaries.append(summary)
            print(json.dumps(summary), flush=True)
    return summaries


def run_challenge_room(counts: list[int], *, store_dir: str | None = None, window_s: float = 60.0,
                       gap_s: float = 4.0) -> list[dict]:
    """A fresh server per count (a fresh board), each running benchmarks.challenge_room's room; the server's CPU and
    memory around it."""
    from benchmarks.challenge_room import challenge_room

    summaries = []
    for n in counts:
        store = store_dir or tempfile.mkdtemp(prefix="challenge-store-")
        with dashboard(env={"ROBUST_STORE_DIR": store, "ROBUST_SHIPPED_MODELS": "1"}, timeout_s=120) as base:
            pid = server_pid(int(base.rsplit(":", 1)[1]))
            rss0, t0 = rss_mb(pid), time.monotonic()
            record = asyncio.run(challenge_room(base, store, n, window_s=window_s, gap_s=gap_s,
                                                warm=lambda: (rss_mb(pid), cpu_s(pid))))
            rss_warm, cpu_warm = record.pop("warm")
            board, acks = record["board_latencies_s"], record["ack_latencies_s"]
            summary = {**{k: v for k, v in record.items() if not k.endswith("latencies_s")},
                       "board_p50_s": quantile(board, 0.5), "board_p95_s": quantile(board, 0.95),
                       "board_max_s": max(board, default=float("nan")),
                       "ack_p50_s": quantile(acks, 0.5), "ack_p95_s": quantile(acks, 0.95),
                       "rss_started_mb": rss0, "rss_before_mb": rss_warm, "rss_after_mb": rss_mb(pid),
                       "server_cpu_s": cpu_s(pid) - cpu_warm, "wall_s": time.monotonic() - t0}
        summaries.append(summary)
        print(json.dumps(summary), flush=True)
    return summaries


def print_challenge_table(summaries: list[dict]) -> None:
    print("| students | submissions (acknowledged / in the database / on the board) | submission → board p50 | p95 "
          "| max | click → acknowledged p50 | p95 | errors | wrong ranks | server RSS, room arrives → leaves "
          "| server CPU (room) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in summaries:
        print(f"| {s['students']} | {s['acknowledged']} / {s['committed']} / {s['on_board']} "
              f"| {s['board_p50_s']:.2f} s | {s['board_p95_s']:.2f} s | {s['board_max_s']:.2f} s "
              f"| {s['ack_p50_s']:.2f} s | {s['ack_p95_s']:.2f} s "
              f"| {len(s['errors'])} | {len(s['wrong_ranks'])} | {s['rss_before_mb']:.0f} → {s['rss_after_mb']:.0f} MB "
              f"| {s['server_cpu_s']:.0f} s |")


def print_scenario_table(summaries: list[dict]) -> None:
    print("| students | view | p50 | p95 | errors | Chromium probes p50 | p95 | errors | server CPU per view |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in summaries:
        for step in s["steps"]:
            p, b = step["protocol"], step.get("browser")
            probe = (f"{b['p50_s']:.2f} s | {b['p95_s']:.2f} s | {len(b['errors'])}" if b else "– | – | –")
            print(f"| {s['students']} | {step['view']} | {p['p50_s']:.2f} s | {p['p95_s']:.2f} s | "
                  f"{len(p['errors'])} | {probe} | {step['server_cpu_per_view_s']:.3f} s |")
        print(f"| {s['students']} | server RSS | {s['rss_before_mb']:.0f} → {s['rss_after_mb']:.0f} MB | | | | | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, nargs="+", default=[1, 10, 30, 60])
    parser.add_argument("--clients", choices=["browser", "protocol"], default="browser",
                        help="Chromium contexts (render on this machine) or protocol clients (the server's work only)")
    parser.add_argument("--probes", type=int, default=0,
                        help="with --clients protocol: this many Chromium students too")
    parser.add_argument("--scenario", help="a lecture as data (benchmarks/scenarios/lecture.toml): protocol students "
                        "walk its steps, one burst per step (with --probes Chromium students beside them)")
    parser.add_argument("--replicas", type=int, default=0, help="with --scenario: that many Streamlit replicas behind "
                        "nginx (python -m robust_core.serve) instead of one dashboard")
    parser.add_argument("--warm", action="store_true", help="with --scenario: one student walks it first, uncounted "
                        "(the lecturer's own walk-through before the room arrives)")
    parser.add_argument("--challenge-room", action="store_true", help="a live challenge instead: the students join "
                        "a guess challenge and submit 3 times in a minute, a projector and a lecturer view open "
                        "(benchmarks/challenge_room.py)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "load_test.json"))
    args = parser.parse_args()
    if args.challenge_room:
        summaries = run_challenge_room(args.students)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summaries, indent=2))
        print_challenge_table(summaries)
        return
    if args.scenario:
        summaries = run_scenario(args.students, args.scenario, probes=args.probes, replicas=args.replicas,
                                 warm=args.warm)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summaries, indent=2))
        print_scenario_table(summaries)
        return
    summaries = run(args.students, clients=args.clients, probes=args.probes)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summaries, indent=2))
    print("| students | clients | home ready p50 | p95 | lecture path ready p50 | p95 | switch model p50 | morph p50 "
          "| p95 | errors | server RSS before → after | server CPU | other CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in summaries:
        rows = [(s["clients"], s)] + ([(f"{s['probes']['browsers']} Chromium probe(s)", s["probes"])]
                                      if "probes" in s else [])
        for kind, r in rows:
            print(f"| {s['students']} | {kind} | {r['home_ready_p50_s']:.2f} s | {r['home_ready_p95_s']:.2f} s | "
                  f"{r['page_ready_p50_s']:.2f} s | {r['page_ready_p95_s']:.2f} s | "
                  f"{r['switch_p50_s']:.2f} s | {r['morph_p50_s']:.2f} s | {r['morph_p95_s']:.2f} s | "
                  f"{len(r['errors'])} | {s['rss_before_mb']:.0f} → {s['rss_after_mb']:.0f} MB | "
                  f"{s['server_cpu_s']:.0f} s | {s['other_cpu_s']:.0f} s |")


if __name__ == "__main__":
    main()
