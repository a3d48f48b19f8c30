"""The server's CPU per view of every lecture path, before and after a change, measured in one run.

    ROBUST_DATA_DIR=../shared/data python -m benchmarks.view_cost --baseline 10751bd --students 10 [--nginx]

Two dashboards, one from a worktree of the ``--baseline`` commit and one from this checkout, each on a fresh store
with the shipped models and results, serve in turn (never at once: they would share the cores) the same room:
one student walks the scenario first (what a room's first student pays: models loaded, figures built), then
``--students`` protocol students walk it, one burst per step. For each step: the server process's CPU seconds over
the step divided by the views it served, for both, and their ratio; ``--rounds`` rooms in turn, each step's
median. CPU seconds of one process, not wall time: the other things this machine runs barely move them. Each
step starts once the server is quiet.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

from benchmarks.load_test import cpu_s, quantile, served, server_pid
from benchmarks.scenario import SCENARIOS, lecture, load_scenario, protocol_step, step_summary

from tests.browser import REPO, dashboard

HERE = Path(__file__).resolve().parent


@contextmanager
def one_server(app_dir: Path | None, behind_nginx: bool):
    """(base URL, the Streamlit process's pid): ``app_dir``'s dashboard, or this checkout's behind nginx."""
    store = tempfile.mkdtemp(prefix="view-cost-")
    if behind_nginx:
        with served(store, 1) as (base, pids, _):
            yield base, pids[0]
        return
    with dashboard(env={"ROBUST_STORE_DIR": store, "ROBUST_SHIPPED_MODELS": "1"}, timeout_s=120,
                   app_dir=app_dir) as base:
        yield base, server_pid(int(base.rsplit(":", 1)[1]))


async def _rooms(base: str, pid: int, steps, students: int, rounds: int) -> list[list[dict]]:
    """The warm-up walk, then ``rounds`` rooms, while the lecturer's projector stays connected on the home page, as
    in a lecture: Streamlit drops its compiled page scripts whenever its last session disconnects, which a room that
    leaves together would otherwise make each round pay again."""
    from benchmarks.scenario import Step
    from benchmarks.streamlit_client import ProtocolSession

    projector = ProtocolSession(base)
    home = Step(view="home", page="", params={}, ready=("page_link",))
    opened = await protocol_step(projector, base, home, first=True, timeout_s=120)
    if "error" in opened:
        raise RuntimeError(f"the projector's session could not open the home page: {opened['error']}")
    try:
        await lecture(base, steps, 1, server_cpu=lambda: cpu_s(pid))
        # Each step counted once the server is quiet: a job the warm-up or the previous step left running (a gallery
        # crafted after its page was shown) is not one of the views'.
        return [[step_summary(r, quantile) for r in
                 await lecture(base, steps, students, server_cpu=lambda: cpu_s(pid), settle_between=True)]
                for _ in range(rounds)]
    finally:
        await projector.close()


def per_view_cpu(app_dir: Path | None, steps, students: int, *, behind_nginx: bool = False,
                 rounds: int = 1) -> list[dict]:
    """Per step of ``steps``: the server's CPU seconds per view while ``students`` walk it after one warm-up walk;
    with ``rounds`` > 1, that many rooms of new students walk it in turn, and each step keeps its median room
    (``server_cpu_per_view_s``) beside every room's figure (``rounds_s``): one room's figure moves by up to 3× from
    one run to the next on this 2-core machine (what else the server happens to do during a 1 s burst)."""
    with one_server(app_dir, behind_nginx) as (base, pid):
        rooms = asyncio.run(_rooms(base, pid, steps, students, rounds))
    summaries = []
    for per_room in zip(*rooms):
        median = dict(sorted(per_room, key=lambda s: s["server_cpu_per_view_s"])[len(per_room) // 2])
        median["rounds_s"] = [s["server_cpu_per_view_s"] for s in per_room]
        median["protocol"] = dict(median["protocol"], errors=[e for s in per_room for e in s["protocol"]["errors"]])
        summaries.append(median)
    return summaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="example: python -m benchmarks.view_cost --baseline 10751bd "
                                            "--students 10 --nginx")
    parser.add_argument("--baseline", required=True, help="the commit to compare with (a git revision)")
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--scenario", default=str(SCENARIOS / "lecture.toml"))
    parser.add_argument("--nginx", action="store_true", help="this checkout as deployed: one replica behind nginx "
                        "(python -m robust_core.serve), which serves the static files itself")
    parser.add_argument("--rounds", type=int, default=3, help="rooms of new students per server; each step's median")
    parser.add_argument("--out", default=str(HERE / "out" / "view_cost.json"))
    args = parser.parse_args(argv)
    _, steps = load_scenario(args.scenario)
    worktree = Path(tempfile.mkdtemp(prefix="view-cost-baseline-")) / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.baseline], check=True,
                   capture_output=True)
    try:
        before = per_view_cpu(worktree, steps, args.students, rounds=args.rounds)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], capture_output=True)
    after = per_view_cpu(None, steps, args.students, behind_nginx=args.nginx, rounds=args.rounds)
    rows = [{"view": b["view"], "before_s": b["server_cpu_per_view_s"], "after_s": a["server_cpu_per_view_s"],
             "before_errors": b["protocol"]["errors"], "after_errors": a["protocol"]["errors"],
             "after_p95_s": a["protocol"]["p95_s"], "before_rounds_s": b["rounds_s"], "after_rounds_s": a["rounds_s"]}
            for b, a in zip(before, after)]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"baseline": args.baseline, "students": args.students, "nginx": args.nginx,
                                          "rounds": args.rounds,
                                          "rows": rows}, indent=2))
    print(f"Median of {args.rounds} rooms of {args.students} students (every room's figure in {args.out}).")
    print(f"| view | server CPU per view, {args.baseline} | this checkout{' behind nginx' if args.nginx else ''} | "
          "ratio | errors |")
    print("|---|---|---|---|---|")
    for r in rows:
        ratio = r["before_s"] / r["after_s"] if r["after_s"] > 0 else float("inf")
        print(f"| {r['view']} | {1000 * r['before_s']:.0f} ms | {1000 * r['after_s']:.0f} ms | {ratio:.1f}× | "
              f"{len(r['before_errors'])} / {len(r['after_errors'])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
