"""What the Attack page derives from cached results, built once per server process (not a page).

Every function here is decorated once, at import: a cached function defined in the page script itself would be
wrapped anew at each of a room's runs, and Streamlit keys a wrapper by the function's source, which it re-reads and
re-tokenises each time (a few percent of the server's CPU per view on the ε-collapse path)."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import streamlit as st
import torch

from lab_pages._outputs import picture, png_bytes, shared_figure, shared_output
from lab_pages._resources import get_dataset, get_store, load_model
from lab_pages._text import plain
from robust_core.attacks import ATTACKS, NORM_SYMBOLS
from robust_core.evaluation import (
    EvaluationCache,
    accuracy_at,
    minimal_eps,
    model_sanity_warnings,
    perturbation_stats,
    sanity_warnings,
)
from robust_core.models import predict_proba
from robust_core.plots import eps_slider_figure, plotly_text

FRAMES = 41  # slider positions: fine enough to feel continuous, light enough to ship to the browser
# On a lecture path (a room opening the same view at once): every student is sent the whole figure, and its size (the
# gallery's strips per frame) was most of what the server spends per view there (py-spy: Streamlit hashes the figure
# twice per send). 21 positions are steps of 0.02 on the digits' 0.4, still a slider on a projector.
LECTURE_FRAMES = 21
GALLERIES_KEPT = 24  # crafted galleries a server keeps (41 frames of 8 digits: ~1 MB each)
# The targeted section's attacks and their parameters: a targeted minimal-ε search per image, on click.
TARGETED_ATTACKS = {"pgd": {"steps": 40}, "apgd_ce": {"steps": 100}, "fgsm": {}}


def attack_label(attack: str) -> str:
    return ATTACKS[attack].label


def attack_caption(attack: str) -> str:
    """The attack's full name, its paper once, and what it does (Markdown: its spec's caption)."""
    return ATTACKS[attack].caption


@st.cache_resource(show_spinner=False)
def eval_cache(store_root: str) -> EvaluationCache:
    return EvaluationCache(get_store(report=False))


@st.cache_resource(show_spinner=False)
def gallery_store(store_root: str) -> OrderedDict:
    """Crafted galleries shared by the sessions of this server, most recent last (a few per model and image set)."""
    return OrderedDict()


@st.cache_resource(show_spinner=False)
def gallery_locks(store_root: str) -> dict:
    """One lock per gallery being crafted: a room opening the same lecture path crafts each gallery once (the others
    wait for it) instead of once per student, all at the same time."""
    return {}


def keep_gallery(store_root: str, key: tuple, gallery: dict) -> None:
    galleries = gallery_store(store_root)
    galleries[key] = gallery
    while len(galleries) > GALLERIES_KEPT:
        galleries.popitem(last=False)


@st.cache_data(show_spinner=False, max_entries=64)
def sanity_of(model_id: str, dataset: str, n: int) -> list[str]:
    """The model's sanity warnings on the first n test images, computed once per server (not at every rerun)."""
    data = get_dataset(dataset)
    return model_sanity_warnings(load_model(model_id), data.test_x[:n], data.test_y[:n])


@st.cache_resource(show_spinner=False, max_entries=64)
def curve_summary(digests: tuple, model_names: tuple, eps_max_param, norm: str, attack: str, _min_eps: tuple,
                  frames: int = FRAMES):
    """Everything the page derives from cached minimal eps (the slider's grid, the curves, the table's rows and the
    sanity warnings), once per server for a set of cached results (``digests``: their keys; a key's content never
    changes), not at every visitor's run: each tensor operation hands the interpreter lock to the other sessions'
    threads, which with a room of students turned these microseconds into tens of milliseconds per run."""
    by_name = dict(zip(model_names, _min_eps))
    eps_max = eps_max_param or max(float(v[torch.isfinite(v)].max()) if torch.isfinite(v).any() else 1.0
                                   for v in _min_eps)
    eps_frames = np.linspace(0, eps_max, frames).round(6).tolist()
    curves = {n: accuracy_at(v, eps_frames).tolist() for n, v in by_name.items()}
    rows = []
    for n, v in by_name.items():
        stats = perturbation_stats(v)
        at = {f"Accuracy at ε={e:g}": float(accuracy_at(v, [e])[0]) for e in np.linspace(0, eps_max, 5)[1:].round(4)}
        rows.append({"Model": n, "Clean accuracy": float(accuracy_at(v, [0.0])[0]), **at,
                     f"Median minimal {NORM_SYMBOLS[norm]}": stats["median"], "Q25": stats["q25"], "Q75": stats["q75"],
                     "Broken": f"{stats['n']}/{len(v)}"})
    warnings = sanity_warnings({plain(n): v for n, v in by_name.items()}, attack=attack, eps_max=eps_max)  # Markdown
    return eps_max, eps_frames, curves, rows, warnings


@st.cache_resource(show_spinner=False, max_entries=16)
def slider_figure(curves_key: tuple, _eps_frames: tuple, _curves_items: tuple, norm: str, gallery_keys: tuple,
                  model_names: tuple, class_names: tuple, projector: bool, first_screen: bool, store_root: str):
    """The figure, built once per (curves, galleries, layout): a rerun with nothing new only re-sends it.
    ``curves_key`` names the curves (:func:`curve_summary`'s digests, largest ε and frames: they determine the grid
    and the curves exactly), so the curves themselves (``_``: not hashed) are not hashed value by value at every
    student's run. ``first_screen``: it must fit under the title of a 1280x720 screen (a lecture path, a
    projector)."""
    galleries = gallery_store(store_root)
    blocks = [{**galleries[k], "model": name} for k, name in zip(gallery_keys, model_names)]
    return shared_figure(eps_slider_figure(list(_eps_frames), {n: list(c) for n, c in _curves_items}, norm=norm,
                                           galleries=blocks, class_names=list(class_names), projector=projector,
                                           height=(480 if projector else 510) if first_screen else None))


@st.cache_data(show_spinner="Searching the smallest ε…", max_entries=256)
def targeted_example(model_id: str, index: int, target: int, attack: str, seed: int, dataset: str):
    """The smallest L∞ ε at which ``attack`` makes the model read test image ``index`` as ``target``, the attacked
    image and both predictions."""
    data = get_dataset(dataset)
    model = load_model(model_id)
    xi, yi = data.test_x[index: index + 1], data.test_y[index: index + 1]
    kwargs = TARGETED_ATTACKS[attack]
    eps = float(minimal_eps(model, xi, yi, attack=attack, eps_max=0.5, target=target, seed=seed, **kwargs)[0])
    if math.isfinite(eps) and eps > 0:
        adv = ATTACKS[attack](model, xi, yi, eps=eps, targeted=True, target=target, seed=seed, **kwargs)
    else:
        adv = xi
    return {"eps": eps, "clean": picture(xi)[0], "adversarial": picture(adv)[0],
            "p_clean": predict_proba(model, xi)[0].numpy(), "p_adv": predict_proba(model, adv)[0].numpy()}


def targeted_pictures(key: tuple, ex: dict) -> tuple[bytes, bytes, bytes]:
    """The clean, attacked and change pictures of a targeted example, 112 px a side, as PNG bytes encoded once
    for every session."""
    def encode() -> tuple[bytes, ...]:
        change = np.clip((ex["adversarial"] - ex["clean"]) * 0.5 / max(ex["eps"], 1e-6) + 0.5, 0, 1)
        return tuple(png_bytes(image, size=112) for image in (ex["clean"], ex["adversarial"], change))

    return shared_output("attack_targeted", key, encode, max_entries=128)


@st.cache_resource(show_spinner=False, max_entries=32)
def comparison(digests: tuple, titles: tuple, transfer: tuple, grids: tuple, _min_eps: tuple, height: int = 380):
    """The comparison's figure, and its curves on the grid every attack was measured on (see curve_summary).

    An attack searched coarsely (Square) is drawn at the ε it was measured at, with markers; when one is present,
    the warnings compare every attack on that grid, where each accuracy is a measurement and not a staircase."""
    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(x=grid, y=accuracy_at(v, grid).tolist(), name=plotly_text(title),
                                mode="lines+markers" if len(grid) < FRAMES and not is_transfer else "lines",
                                line=dict(width=3, dash="dash" if is_transfer else "solid"),
                                line_shape="hv" if is_transfer else "linear")
                     for title, v, is_transfer, grid in zip(titles, _min_eps, transfer, grids)])
    fig.update_layout(template="plotly_white", height=height, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis_title="ε (L∞, pixel scale 0–1)",
                      yaxis=dict(title="accuracy under attack", tickformat=".0%", range=[0, 1.02]))
    common = min(grids, key=len)
    return common, [accuracy_at(v, common).tolist() for v in _min_eps], shared_figure(fig)
