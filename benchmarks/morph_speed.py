"""Morphs a room can wait for: the Class Visualization page's job, old and new, in one run.

    ROBUST_DATA_DIR=../shared/data python -m benchmarks.morph_speed [--repeats 3] [--page] [--baseline c9dad47]

Two morphs, with the page's defaults (smoothed sign ascent: 16 noisy copies, σ = 0.3, sign steps of 0.01, at most
200 steps, stop at p(target) = 0.99, seed 0):

- **lecture path**: ``assets/lectures/03_morph_4_to_9.toml`` (its test image, target and two models);
- **drawn 7 → 2**: a 7 drawn as the page's canvas draws it, quantised as its link stores it, on the page's three
  default models (standard, PGD-AT, GFA deep).

Each is run as the page runs it: the page's job function (``compare_morphs`` with the job's progress and, new, its
``on_result`` publishing each model's result) in a worker thread of a :class:`robust_core.jobs.JobRunner` lane, plus
the downloads (GIF and PNG strip of every model: the old page encoded them after the job, on the page). **Old** is
the code of commit ``--baseline`` (``compare.py`` and ``readings.py`` read with ``git show``), **new** the working
tree's; they alternate, ``--repeats`` times each, and the medians are compared (the ratio is what to read on a
shared machine; the load average is printed). "first" is the time from submission until the page can show the
first model (old: only once every model was done), "all" until every model is shown with its downloads. The
readings of each final image by the other models and the k-NN (k = 3) must be the same for old and new; they are
printed.

``--threads 0`` runs the new code with torch's default threads (what the old code did), to tell what the single
thread gains from what the early publishing and the faster k-NN reading gain.

``--page`` also measures the real page: a dashboard on a free port (fresh store, shipped models), one browserless
client (``benchmarks/streamlit_client.py``) that opens each morph's link (the drawn 7 travels in ``?drawing=``),
clicks Morph and times until the first and until the last "Read by the others" verdict is on the page.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import torch

from robust_core.classviz import RECIPES
from robust_core.classviz.compare import compare_morphs
from robust_core.classviz.export import gif, strip_png
from robust_core.classviz.link import decode_drawing, encode_drawing
from robust_core.data import load_dataset
from robust_core.jobs import JobRunner
from robust_core.shipped import install_shipped
from robust_core.store import ModelStore

REPO = Path(__file__).resolve().parents[1]

# The page's defaults (lab_pages/classviz.py's settings with the smoothed recipe and untouched options).
PAGE_SETTINGS = dict(RECIPES["smoothed"], l2=0.0, tv=0.0, jitter_pixels=0, blur_every=0, budget=None, threshold=0.99,
                     seed=0)
DEFAULT_METHODS = [("standard", None), ("pgd_at", None), ("gfa", "deep")]  # the page's comparison_defaults


def drawn_seven() -> torch.Tensor:
    """A 7 drawn the way the page's canvas returns it (white 20-px strokes on a 280 x 280 black RGBA canvas), at the
    link's 16 grey levels, as the page morphs it."""
    import numpy as np
    from PIL import Image, ImageDraw

    from robust_core.digits import mnist_style

    canvas = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    ImageDraw.Draw(canvas).line([(60, 50), (210, 50), (120, 250)], fill=(255, 255, 255, 255), width=20, joint="curve")
    return decode_drawing(encode_drawing(mnist_style(np.array(canvas))[0]))[0]


def baseline_compare(commit: str):
    """``compare_morphs`` as it was at ``commit`` (with that commit's readings.py), importable beside today's."""
    def load(path: str, name: str, replace: tuple[str, str] | None = None):
        source = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout
        if replace:
            source = source.replace(*replace)
        spec = importlib.util.spec_from_loader(f"robust_core.classviz.{name}", loader=None)
        module = importlib.util.module_from_spec(spec)
        module.__package__ = "robust_core.classviz"
        sys.modules[spec.name] = module
        exec(compile(source, f"{commit}:{path}", "exec"), module.__dict__)
        return module

    load("robust_core/classviz/readings.py", "baseline_readings")
    return load("robust_core/classviz/compare.py", "baseline_compare",
                ("from .readings import readings", "from .baseline_readings import readings")).compare_morphs


def run_as_job(runner: JobRunner, key: str, fn) -> tuple[float, float, object]:
    """(seconds until the first model could be shown, until all with their downloads, the comparison)."""
    t0 = time.perf_counter()
    first = []

    def body(ctx):
        return fn(ctx, lambda: first.append(time.perf_counter() - t0) if not first else None)

    job = runner.submit(key, body, owner="benchmark", lane="short")
    job.wait()
    if job.status != "done":
        raise RuntimeError(f"{key}: {job.status} {job.error}\n{job.traceback}")
    total = time.perf_counter() - t0
    return (first[0] if first else total), total, job.result


def cases(store: ModelStore, data) -> dict[str, tuple[dict, torch.Tensor, int]]:
    lecture = tomllib.loads((REPO / "assets/lectures/03_morph_4_to_9.toml").read_text())["params"]
    lecture_models = {store.get(m).name: store.load(m) for m in lecture["models"].split(",")}
    entries = store.list("mnist")
    drawn_models = {}
    for method, layers in DEFAULT_METHODS:
        e = next(e for e in entries if e.meta["config"]["arch"] == "cnn" and e.meta["config"]["method"] == method
                 and (layers is None or e.meta["config"]["method_kwargs"].get("layers") == layers))
        drawn_models[e.name] = store.load(e.model_id)
    return {"lecture path 4 → 9": (lecture_models, data.test_x[int(lecture["index"])], int(lecture["target"])),
            "drawn 7 → 2": (drawn_models, drawn_seven(), 2)}


def library(args, store, data) -> None:
    old_compare = baseline_compare(args.baseline)
    runner = JobRunner(workers={"short": 1})
    for case, (models, image, target) in cases(store, data).items():
        settings = dict(PAGE_SETTINGS, start="image", image=image)

        def old(ctx, shown):
            out = old_compare(models, target=target, train_x=data.train_x, train_y=data.train_y,
                              on_progress=ctx.progress, **settings)
            downloads = {n: (gif(r), strip_png(r)) for n, r in out.results.items()}  # on the old page
            return out, downloads

        def new(ctx, shown):
            def publish(partial):
                ctx.job.details["comparison"] = partial
                shown()
            out = compare_morphs(models, target=target, train_x=data.train_x, train_y=data.train_y,
                                 on_progress=ctx.progress, on_result=publish, threads=args.threads or None, **settings)
            return out, out.downloads

        times = {"old": [], "new": []}
        outs = {}
        for rep in range(args.repeats + 1):  # the first round warms both up and is not counted
            for kind, fn in (("old", old), ("new", new)):
                first, total, (out, _) = run_as_job(runner, f"{case}:{kind}:{rep}", fn)
                if rep:
                    times[kind].append((first, total))
                outs[kind] = out
        med = {k: (statistics.median(f for f, _ in v), statistics.median(t for _, t in v)) for k, v in times.items()}
        print(f"\n{case} ({len(models)} models; load average {os.getloadavg()[0]:.2f}):")
        for kind in ("old", "new"):
            per_model = ", ".join(f"{n} {outs[kind].timings[n]:.2f} s ({int(r.steps_run[0])} steps)"
                                  for n, r in outs[kind].results.items())
            print(f"  {kind}: first model shown {med[kind][0]:.2f} s, all {med[kind][1]:.2f} s  [{per_model}]")
        print(f"  old / new: first {med['old'][0] / med['new'][0]:.1f}x, all {med['old'][1] / med['new'][1]:.1f}x")
        for name in models:
            same = torch.equal(outs["old"].results[name].final, outs["new"].results[name].final)
            readings = {k: {who: c for who, (c, _) in outs[k].cross[name].items()} for k in ("old", "new")}
            p = float(outs["new"].results[name].final_probabilities[0, target])
            print(f"  {name}: p({target}) = {p:.3f}; read by the others: old {readings['old']}, new {readings['new']}"
                  f"{'' if readings['old'] == readings['new'] else '  <-- DIFFERENT'}; same final image: {same}")


async def page_client(base: str, opens: dict[str, dict], repeats: int) -> dict[str, list[tuple[float, float, int]]]:
    from benchmarks.streamlit_client import ProtocolSession

    out = {}
    for case, params in opens.items():
        out[case] = []
        for rep in range(repeats + 1):  # the first click warms the server up and is not counted
            session = ProtocolSession(base)
            await session.connect()
            try:
                # Another seed each time: a morph made before would be shown from the runner, not computed.
                await session.open("classviz", params, timeout_s=120)
                await session.run(widgets=[_number(session, "Seed", 100 + rep)], timeout_s=120)
                n = len(params["models"].split(","))
                t0 = time.monotonic()
                await session.click("Morph", timeout_s=120)

                def verdicts():
                    return sum("Read by the others" in t for t in session.texts())

                await session.wait_for(lambda els: verdicts() >= 1, timeout_s=120)
                first = time.monotonic() - t0
                await session.wait_for(lambda els: verdicts() >= n and any(
                    k == "download_button" for k, _ in session.elements), timeout_s=120)
                if rep:
                    out[case].append((first, time.monotonic() - t0, n))
            finally:
                await session.close()
    return out


def _number(session, label: str, value: int):
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    element = next(e.number_input for kind, e in session.elements if kind == "number_input"
                   and e.number_input.label == label)
    return WidgetState(id=element.id, int_value=value)


def page(args, store, data) -> None:
    from tests.browser import dashboard

    opens = {}
    for case, (models, image, target) in cases(store, data).items():
        ids = [e.model_id for e in store.list("mnist") if e.name in models]
        params = {"dataset": "mnist", "models": ",".join(ids), "target": str(target)}
        if case.startswith("lecture"):
            params.update(tomllib.loads((REPO / "assets/lectures/03_morph_4_to_9.toml").read_text())["params"])
        else:
            params.update(start="draw", drawing=encode_drawing(image))
        opens[case] = params
    with dashboard(env={"ROBUST_STORE_DIR": tempfile.mkdtemp(prefix="morph-store-"), "ROBUST_SHIPPED_MODELS": "1"},
                   timeout_s=120) as base:
        results = asyncio.run(page_client(base, opens, args.repeats))
    print(f"\nthe page, click to verdicts (load average {os.getloadavg()[0]:.2f}):")
    for case, runs in results.items():
        print(f"  {case} ({runs[0][2]} models): first verdict {statistics.median(f for f, _, _ in runs):.2f} s, all "
              f"verdicts and downloads {statistics.median(t for _, t, _ in runs):.2f} s (median of {len(runs)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default="c9dad47", help="the commit whose compare.py/readings.py are 'old'")
    parser.add_argument("--page", action="store_true", help="also time the real page (a dashboard and a client)")
    parser.add_argument("--threads", type=int, default=1,
                        help="compare_morphs' threads for the new code (its default 1; 0: leave torch's as they are)")
    parser.add_argument("--no-library", action="store_true", help="only the page")
    args = parser.parse_args()
    data = load_dataset("mnist")
    store = ModelStore(tempfile.mkdtemp(prefix="morph-bench-"))
    install_shipped(store)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, default {torch.get_num_threads()} threads; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not args.no_library:
        library(args, store, data)
    if args.page:
        page(args, store, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
