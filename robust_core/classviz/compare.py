"""Morph one start toward one class on several models, and ask every other classifier what it sees in each result.

This is the Class Visualization page's computation (one call, so it can run as one job of the server's job
runner and be shared by students who ask for the same morph), also usable from Python:

    from robust_core.classviz.compare import compare_morphs
    out = compare_morphs({"standard": std, "PGD-AT": robust}, target=9, image=four, train_x=tx, train_y=ty,
                         **RECIPES["smoothed"])
    out.cross["PGD-AT"]     # {"standard": (class, probability), "k-NN (k=3)": (...)}: what the others read
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

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
    knn: KNNMorphResult | None = None  # the seed's gradient-free k-NN morph


def compare_morphs(models: dict, *, target: int, train_x: torch.Tensor, train_y: torch.Tensor, all_targets: bool = False,
                   with_knn: bool = False, num_classes: int = 10,
                   on_progress: Callable[[float, str], None] | None = None, **settings) -> MorphComparison:
    """Morph with :func:`visualize` (``settings`` are its keyword arguments: start, image, steps, lr, seed, ...) on each
    model of ``models`` (name -> model), then read each final image with the *other* models and a k-NN (k = 3) on
    ``train_x``/``train_y``: a morph that looks like the target to classifiers it was not optimised against is a
    picture of the target, one that fools its own model only is an adversarial example.

    ``on_progress(fraction, message)`` is called every 10 steps (it may raise to stop the work, as a cancelled
    job's progress does). Models are used in eval mode and restored; tensors come back detached.
    """
    names = list(models)
    if not names:
        raise ValueError("give at least one model")
    steps = int(settings.get("steps", 200))
    parts = len(names) + (1 if all_targets else 0) + (1 if with_knn else 0)
    results, timings = {}, {}
    for j, name in enumerate(names):
        def on_step(step, x, p, j=j, name=name):
            if on_progress is not None and (step % 10 == 0 or step == steps):
                on_progress((j + step / max(steps, 1)) / parts, f"{name}: step {step}, p(target) = {100 * float(p[0, target]):.1f}%")

        t0 = time.perf_counter()
        results[name] = visualize(models[name], int(target), on_step=on_step, **settings)
        timings[name] = time.perf_counter() - t0
    grid = None
    if all_targets:
        t0 = time.perf_counter()
        grid = visualize(models[names[0]], list(range(num_classes)), **settings)
        timings["grid"] = time.perf_counter() - t0
    finals = torch.cat([results[n].final.cpu() for n in names])
    read = readings(finals, models, train_x=train_x, train_y=train_y)
    cross = {n: {who: (int(c[i]), float(p[i])) for who, (c, p) in read.items() if who != n} for i, n in enumerate(names)}
    start = settings.get("image")
    start = start if start is not None else results[names[0]].frames[0, 0]
    dark = {n: dark_gradient_share(models[n], start, int(target), loss=settings.get("loss", "log_prob")) for n in names}
    knn = None
    if with_knn:
        if on_progress is not None:
            on_progress((parts - 1) / parts, "k-NN morph (distances to every training image at every step)")
        t0 = time.perf_counter()
        knn = knn_morph(train_x, train_y, start, int(target), steps=steps, seed=int(settings.get("seed", 0)))
        timings["knn"] = time.perf_counter() - t0
    return MorphComparison(results=results, cross=cross, dark_share=dark, timings=timings, grid=grid, knn=knn)


__all__ = ["MorphComparison", "compare_morphs"]
