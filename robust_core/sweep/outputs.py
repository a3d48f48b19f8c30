"""A sweep's outputs: the table printed, ``results.csv``, ``results.json`` and the pages' figures as HTML that opens
offline (plotly.js written once beside the figures, referenced relatively)."""
from __future__ import annotations

import csv
import json
import os
import re
import sys
from pathlib import Path

from ..attacks import ATTACKS
from ..evaluation import EvaluationCache, accuracy_at, attack_comparison_warnings
from ..file_locks import atomic_write_text
from ..store import ModelStore
from .grids import MinimalEpsJob, SweepResult
from .reuse import find_minimal_eps

PLOTLYJS = "plotly.min.js"  # beside the figures, which load it by this relative name

# ---- outputs -------------------------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _run_values(store: ModelStore, cache: EvaluationCache, run: dict):
    """A minimal-ε run's per-image values: its cache entry, or the larger result it was read from."""
    job = MinimalEpsJob(run["model_id"], run["dataset"], run["attack"], tuple(sorted(run["params"].items())),
                        run["n"], run["seed"])
    found = find_minimal_eps(store, cache, job)
    return None if found is None else found[0]


def figures(result: SweepResult, store: ModelStore) -> dict:
    """The pages' figures for a sweep: {file stem: plotly Figure}.

    - ``accuracy_<dataset>_<attack>``: the Attack page's ε-slider figure, robust accuracy against ε for every model
      (from the cached minimal ε on 41 points up to the grid's largest ε, or AutoAttack's ε values);
    - ``comparison_<model>``: one model's curves under every L∞ attack (the page's attack comparison), when the sweep
      has several;
    - ``training_curves``: the Train page's curves of the trained models.
    """
    import plotly.graph_objects as go
    import plotly.io as pio

    from ..plots import eps_slider_figure, training_curves_figure

    out = {}
    cache = EvaluationCache(store)
    evaluation_runs = [r for r in result.runs if r["kind"] in ("minimal_eps", "autoattack")]
    if evaluation_runs:
        eps_grid = (result.grid.get("evaluation") or result.grid)["eps"]
        top = max(eps_grid) or 1e-6
        fine = [round(top * i / 40, 6) for i in range(41)]
        curves: dict[tuple, dict[str, tuple[list, list]]] = {}
        for r in evaluation_runs:
            per = curves.setdefault((r["dataset"], r["attack"]), {})
            if r["kind"] == "minimal_eps":
                values = _run_values(store, cache, r)
                if values is not None:
                    per[r["model"]] = (fine, accuracy_at(values, fine).tolist())
            else:
                xs, ys = per.get(r["model"], ([], []))
                per[r["model"]] = (xs + [r["eps"]], ys + [r["robust_accuracy"]])
        for (dataset, attack), per in curves.items():
            if not per:
                continue
            xs = sorted({x for xs, _ in per.values() for x in xs})
            lines = {}
            for model, (mx, my) in per.items():
                lookup = dict(zip(mx, my))
                if all(x in lookup for x in xs):
                    lines[model] = [lookup[x] for x in xs]
            if not lines:
                continue
            fig = eps_slider_figure(xs, lines, norm=ATTACKS[attack].norm)
            # Built unvalidated for the page's speed, with the template as a name: write_html needs the template itself.
            fig.layout.template = pio.templates["plotly_white"]
            # The slider rewrites the title at every ε: each frame's title says which attack and dataset too.
            prefix = f"{ATTACKS[attack].title} · {dataset} · "
            fig.layout.title.text = prefix + fig.layout.title.text
            for frame in fig.frames:
                frame.layout.title.text = prefix + frame.layout.title.text
            out[f"accuracy_{dataset}_{attack}"] = fig
        by_model: dict[str, dict[str, list]] = {}
        for (dataset, attack), per in curves.items():
            if ATTACKS[attack].norm != "linf" or ATTACKS[attack].kind == "ensemble":
                continue
            for model, (mx, my) in per.items():
                by_model.setdefault(model, {})[attack] = my
        for model, per_attack in by_model.items():
            if len(per_attack) < 2:
                continue
            fig = go.Figure([go.Scatter(x=fine, y=acc, mode="lines", name=ATTACKS[a].title, line=dict(width=3))
                             for a, acc in per_attack.items()])
            fig.update_layout(template="plotly_white", height=420, title=f"{model}: attack comparison",
                              xaxis_title="ε (L∞, pixel scale 0–1)",
                              yaxis=dict(title="accuracy under attack", tickformat=".0%", range=[0, 1.02]))
            out[f"comparison_{model}"] = fig
    trained = [r for r in result.runs if r["kind"] == "train"]
    if trained:
        histories = {}
        for r in trained:
            entry = store.get(r["model_id"])
            if entry.meta.get("history"):
                histories[entry.name] = entry.meta["history"]
        if histories:
            out["training_curves"] = training_curves_figure(histories)
    return out


def model_warnings(result: SweepResult, store: ModelStore) -> dict[str, list[str]]:
    """The page's gradient-masking warnings per model, from its L∞ attacks' curves (when it has several)."""
    per_model: dict[str, dict[str, list[float]]] = {}
    grids: dict[str, list[float]] = {}
    cache = EvaluationCache(store)
    for r in result.runs:
        if r["kind"] != "minimal_eps" or r["norm"] != "linf":
            continue
        values = _run_values(store, cache, r)
        if values is None:
            continue
        top = max((result.grid.get("evaluation") or result.grid)["eps"]) or 1e-6
        grid = [round(top * i / 40, 6) for i in range(41)]
        grids[r["model_id"]] = grid
        per_model.setdefault(r["model_id"], {})[r["attack"]] = accuracy_at(values, grid).tolist()
    return {m: w for m, curves in per_model.items() if len(curves) > 1
            for w in [attack_comparison_warnings(curves, grids[m])] if w}


CSV_COLUMNS = {
    "evaluate": ["model_id", "model", "dataset", "attack", "norm", "eps", "robust_accuracy", "n", "seed", "params",
                 "protocol"],
    "train": ["model_id", "model", "dataset", "arch", "method", "lam", "train_eps", "seed", "epochs", "n_train",
              "test_acc", "wall_time_s"],
    "train+evaluate": ["model_id", "model", "dataset", "arch", "method", "lam", "train_eps", "seed", "epochs",
                       "n_train", "test_acc", "attack", "norm", "eps", "robust_accuracy", "n", "attack_seed", "params",
                       "protocol"],
}


def write_outputs(result: SweepResult, out_dir: str | os.PathLike, store: ModelStore) -> list[Path]:
    """``results.csv``, ``results.json`` and the figures' HTML files in ``out_dir``: the paths written."""
    from ..store import library_versions

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    columns = CSV_COLUMNS[result.kind]
    path = out / "results.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result)
    written.append(path)
    payload = {"kind": result.kind, "grid": result.grid, "rows": list(result), "runs": result.runs,
               "warnings": model_warnings(result, store),
               "jobs": {"total": result.jobs, "reused": result.reused, "computed": result.computed},
               "store": str(store.root), "versions": library_versions()}
    path = out / "results.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    written.append(path)
    drawn = figures(result, store)
    if drawn:
        written.append(write_plotlyjs(out))
    for stem, fig in drawn.items():
        path = out / f"{_slug(stem)}.html"
        # plotly.js from the file beside it, not from a CDN: the figures open offline (and stay small).
        fig.write_html(path, include_plotlyjs=PLOTLYJS, auto_play=False)
        written.append(path)
    return written


def write_plotlyjs(out_dir: str | os.PathLike) -> Path:
    """``plotly.min.js`` of the installed plotly in ``out_dir`` (rewritten when it differs: a file left by another
    plotly version would not draw this version's figures); the path."""
    from plotly.offline import get_plotlyjs

    path = Path(out_dir) / PLOTLYJS
    text = get_plotlyjs()
    try:
        if path.read_text(encoding="utf-8") == text:
            return path
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)
    return path


def print_table(result: SweepResult, file=None) -> None:
    file = file if file is not None else sys.stdout
    if result.kind == "train":
        width = max([len(r["model"]) for r in result] + [5])
        print(f"{'model':{width}s}  {'id':16s}  test accuracy", file=file)
        for r in result:
            print(f"{r['model']:{width}s}  {r['model_id']}  {100 * r['test_acc']:6.2f}%", file=file)
        return
    groups: dict[tuple, dict[str, dict[float, float]]] = {}
    for r in result:
        groups.setdefault((r["attack"], r["n"]), {}).setdefault(r["model"], {})[r["eps"]] = r["robust_accuracy"]
    for (attack, n), per_model in groups.items():
        eps = sorted({e for accs in per_model.values() for e in accs})
        width = max([len(m) for m in per_model] + [5])
        print(f"{ATTACKS[attack].label}, first {n} test images", file=file)
        print(f"{'model':{width}s} " + " ".join(f"{e:>7g}" for e in eps), file=file)
        for model, accs in per_model.items():
            print(f"{model:{width}s} " + " ".join(f"{100 * accs[e]:6.1f}%" if e in accs else "      -" for e in eps),
                  file=file)
