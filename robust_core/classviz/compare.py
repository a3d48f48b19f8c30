"""Morph one start toward one class on several models, and ask every other classifier what it sees in each result.

This is the Class Visualization page's computation (one call, so it can run as one job of the server's job
runner and be shared by students who ask for the same morph), also usable from Python:

    from robust_core.classviz.compare import compare_morphs
    out = compare_morphs({"standard": std, "PGD-AT": robust}, target=9, image=four, train_x=tx, train_y=ty,
                         **RECIPES["smoothed"])
    out.cross["PGD-AT"]     # {"standard": (class, probability), "k-NN (k=3)": (...)}: what the others read
    out.downloads["PGD-AT"]["gif"]   # the morph as an animated GIF (bytes), encoded once with the result

Each model's result is complete (its morph, what the others read in it, its downloads) as soon as its own ascent
stops: ``on_result`` receives the comparison so far after each model, so a page shows the first model while the
next ones run.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .export import finals_png, gif, strip_png
from .knn import KNNMorphResult, knn_morph
from .readings import readings
from .visualize import VisualizationResult, dark_gradient_share, visualize


@dataclass
class MorphComparison:
    results: dict[str, VisualizationResult]  # model name -> its morph of the start toward the target
    cross: dict[str, dict[str, tuple[int, float]]]  # model name -> {other classifier: (class read, its probability)}
    dark_share: dict[str, float]  # model name -> share of the squared input gradient on the start's dark pixels
    timings: dict[str, float] = field(default_factory=dict)  # seconds: per model name, "grid", "knn"
    grid: VisualizationResult | None = None  # the first model's morph toward every class (one batch)
    knn: KNNMorphResult | None = None  # the gradient-free k-NN morph
    downloads: dict[str, dict[str, bytes]] = field(default_factory=dict)  # model name -> {"gif": ..., "strip": ...}
    grid_png: bytes | None = None  # the grid's ten final images as one PNG strip
    complete: bool = True  # False while models (or the grid, the k-NN morph) are still to come


@contextmanager
def torch_threads(threads: int | None):
    """Run the block with ``threads`` intra-op threads (None: as it is), restored afterwards."""
    before = torch.get_num_threads()
    if threads is not None and threads != before:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def compare_morphs(models: dict, *, target: int, train_x: torch.Tensor, train_y: torch.Tensor,
                   all_targets: bool = False, with_knn: bool = False, num_classes: int = 10,
                   on_progress: Callable[[float, str], None] | None = None,
                   on_result: Callable[[MorphComparison], None] | None = None, threads: int | None = 1,
                   **settings) -> MorphComparison:
    """Morph with :func:`visualize` (``settings`` are its keyword arguments: start, image, steps, lr, seed, ...) on each
    model of ``models`` (name -> model), one after the other, and read each final image with the *other* models and a
    k-NN (k = 3) on ``train_x``/``train_y``: a morph that looks like the target to classifiers it was not optimised
    against is a picture of the target, one that fools its own model only is an adversarial example.

    Each model's ascent stops at its own ``threshold`` (visualize's early stop) and its result is read, given its
    GIF and PNG strip, and passed to ``on_result`` (a :class:`MorphComparison` of the models done so far,
    ``complete=False``) before the next model starts; the last call has ``complete=True`` and is the return value.
    Every model runs with the same settings and seed, so it draws the same noise as it would alone: the results
    are those of separate :func:`visualize` calls.

    ``threads``: intra-op threads for the whole call (default 1, restored afterwards). A step is a few milliseconds
    of small convolutions: on a shared machine whose other cores are busy, a second OpenMP thread makes every
    operation wait for a descheduled thread (a 2-thread morph took 2-5x longer than a 1-thread one next to two busy
    processes, ``benchmarks/morph_speed.py``); alone it gains nothing.

    ``on_progress(fraction, message)`` is called every 10 steps (it may raise to stop the work, as a cancelled
    job's progress does). Models are used in eval mode and restored; tensors come back detached.
    """
    names = list(models)
    if not names:
        raise ValueError("give at least one model")
    steps = int(settings.get("steps", 200))
    parts = len(names) + (1 if all_targets else 0) + (1 if with_knn else 0)
    start = settings.get("image")
    out = MorphComparison(results={}, cross={}, dark_share={}, complete=False)
    with torch_threads(threads):
        for j, name in enumerate(names):
            def on_step(step, x, p, j=j, name=name):
                if on_progress is not None and (step % 10 == 0 or step == steps):
                    on_progress((j + step / max(steps, 1)) / parts,
                                f"{name}: step {step}, p(target) = {100 * float(p[0, target]):.1f}%")

            t0 = time.perf_counter()
            result = visualize(models[name], int(target), on_step=on_step, **settings)
            out.timings[name] = time.perf_counter() - t0
            others = {n: m for n, m in models.items() if n != name}
            read = readings(result.final.cpu(), others, train_x=train_x, train_y=train_y)
            first = start if start is not None else result.frames[0, 0]
            out.results[name] = result
            out.cross[name] = {who: (int(c[0]), float(p[0])) for who, (c, p) in read.items()}
            out.dark_share[name] = dark_gradient_share(models[name], first, int(target),
                                                       loss=settings.get("loss", "log_prob"))
            out.downloads[name] = {"gif": gif(result), "strip": strip_png(result)}
            if on_result is not None and (j < len(names) - 1 or all_targets or with_knn):
                on_result(_snapshot(out))
        if all_targets:
            if on_progress is not None:
                on_progress(len(names) / parts, f"all {num_classes} targets at once")
            t0 = time.perf_counter()
            out.grid = visualize(models[names[0]], list(range(num_classes)), **settings)
            out.timings["grid"] = time.perf_counter() - t0
            out.grid_png = finals_png(out.grid)
        if with_knn:
            if on_progress is not None:
                on_progress((parts - 1) / parts, "k-NN morph (distances to every training image at every step)")
            first = start if start is not None else out.results[names[0]].frames[0, 0]
            t0 = time.perf_counter()
            out.knn = knn_morph(train_x, train_y, first, int(target), steps=steps, seed=int(settings.get("seed", 0)))
            out.timings["knn"] = time.perf_counter() - t0
    out.complete = True
    if on_result is not None:
        on_result(out)
    return out


def _snapshot(comparison: MorphComparison) -> MorphComparison:
    """A copy of the comparison so far whose dictionaries the running job no longer changes (a page reads it)."""
    return MorphComparison(results=dict(comparison.results), cross=dict(comparison.cross),
                           dark_share=dict(comparison.dark_share), timings=dict(comparison.timings),
                           grid=comparison.grid, knn=comparison.knn, downloads=dict(comparison.downloads),
                           grid_png=comparison.grid_png, complete=comparison.complete)


__all__ = ["MorphComparison", "compare_morphs", "torch_threads"]
