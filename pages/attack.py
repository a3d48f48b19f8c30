"""Attack page: robust accuracy against eps with an instant slider, a gallery, and attack comparisons."""
import inspect
import io
import json
import math
import re
import threading
import time
from collections import OrderedDict

import numpy as np
import streamlit as st
import torch

from pages._audience import (
    job_runner,
    job_status,
    progress_line,
    submit_job,
    visitor_work_error,
)
from pages._outputs import png_bytes, shared_figure, shared_output, shared_table
from pages._shared import (
    analysis_page,
    default_candidates,
    focus_section,
    folded_controls,
    get_store,
    lecture_focus,
    load_model,
    model_labels,
    opened_image,
    plain,
    presenting,
    rest_of_page,
    rest_shown,
    settings_box,
    settings_row,
    show_chart,
)
from pages._url import set_url, url_choice, url_choices
from pages.photo_views import attack_view
from robust_core.access import Work
from robust_core.attacks import ATTACKS, NORM_SYMBOLS
from robust_core.evaluation import (
    COMPARISON_SEARCH,
    MASKING_EXPLANATION,
    MASKING_SECTION,
    PAGE_ATTACK_PARAMS,
    PAGE_EPS_MAX,
    EvalKey,
    EvaluationCache,
    accuracy_at,
    attack_comparison_notes,
    attack_comparison_warnings,
    cached_minimal_eps,
    cached_transfer_eps,
    comparison_params,
    measured_eps_grid,
    minimal_eps,
    model_sanity_warnings,
    perturbation_stats,
    sanity_warnings,
    single_step_masking,
    training_method_of,
)
from robust_core.gallery import gallery_frames
from robust_core.models import predict_proba
from robust_core.plots import eps_slider_figure, plotly_text
from robust_core.sweep import Job as SweepJob
from robust_core.sweep import execute_job as execute_sweep_job
from robust_core.sweep import read_autoattack

SUBSET_SIZES = [100, 200, 500, 1000, 2000, 5000, 10000]
EPS_MAX = PAGE_EPS_MAX
FRAMES = 41  # slider positions: fine enough to feel continuous, light enough to ship to the browser
GALLERY_SIZE = 8
GALLERY_MODELS = 3  # blocks of digits beside the curves: more would not fit a laptop screen with the slider
# The default parameters of each attack, as the controls below set them (the library's, which the shipped
# evaluations and sweeps use too): the comparison view uses the same dictionaries, so every view shares cache entries.
DEFAULT_PARAMS = PAGE_ATTACK_PARAMS


def attack_label(attack: str) -> str:
    return ATTACKS[attack].label


def attack_caption(attack: str) -> str:
    """The attack's full name, its paper once, and what it does (from its docstring, citation removed)."""
    spec = ATTACKS[attack]
    paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(spec.fn.__doc__ or "").split("\n\n")]
    # The docstring's first paragraph cites the paper too ("PGD (Madry et al., ICLR 2018). Norms: ..."): drop both.
    first = re.sub(r"\s*\([^()]*\b(19|20)\d\d\b[^()]*\)", "", paragraphs[0]) if paragraphs else ""
    first = re.sub(r"\s*Norms?: [^.]*\.?\s*$", "", first).strip().rstrip(".")
    details = next((p for p in paragraphs[1:] if not p.startswith(("Args", "Example"))), "")
    if len(first) > 60 or not details:  # a first paragraph that already describes the attack
        first, details = attack_label(attack), first + "."
    return f"**{first}** ({spec.paper}). {details.replace('``', '`')}"


@st.cache_resource(show_spinner=False)
def get_eval_cache(store_root: str) -> EvaluationCache:
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


@st.cache_data(show_spinner=False, max_entries=64)
def sanity_of(model_id: str, dataset: str, n: int) -> list[str]:
    """The model's sanity warnings on the first n test images, computed once per server (not at every rerun)."""
    return model_sanity_warnings(load_model(model_id), data.test_x[:n], data.test_y[:n])


page_started = time.perf_counter()
dataset, store, data, networks = analysis_page("Attack", photo_view=attack_view)
opened = opened_image("pages/attack.py", dataset)
if opened and opened["split"] == "test":
    if opened["new"]:
        st.session_state["target_index"] = opened["index"]  # the Targeted section below starts from it
    if st.session_state.get("target_index") == opened["index"]:
        st.info(f"Test image #{opened['index']} opened from the Confidence page: the **Targeted** section below finds the "
                "smallest ε that makes each model read it as another class.", icon=":material/open_in_new:")
names = model_labels(networks)  # plain text for the pickers; plain(...) where Markdown renders, plotly_text in figures
cache = get_eval_cache(str(store.root))
galleries = gallery_store(str(store.root))
top = st.container()  # a lecture path's promised section draws here, first (pages._shared.focus_section)
folded = settings_row(2)  # (on a lecture path or a projector: both settings on one line)

with settings_box("Models, attack and images", folded[0]):
    c1, c2, c3 = st.columns([3, 2, 1])
    default_models = ([st.session_state["model_id"]] if st.session_state.get("model_id") in names
                      else [default_candidates(networks)[0].model_id])  # never another visitor's model
    # Defaults from the address (a lecture path, a shared link); the state goes back into it below.
    url_choices("attack_models", "models", list(names), default_models, limit=6)
    # AutoAttack is a chain run at a fixed ε (the CLI: python -m robust_core.evaluate --attack autoattack_standard);
    # the per-image minimal-ε search these curves rest on would run the whole chain at every bisection step.
    page_attacks = [a for a, sp in ATTACKS.items() if sp.kind != "ensemble"]
    url_choice("attack_attack", "attack", page_attacks, "pgd")
    url_choice("attack_n", "n", SUBSET_SIZES, 500)
    model_ids = c1.multiselect("Models", list(names), key="attack_models",
                               format_func=names.get, max_selections=6, wrap=True)  # (every name shows)
    attack = c2.selectbox("Attack", page_attacks, key="attack_attack",
                          format_func=attack_label)
    n_images = c3.selectbox("Test images", SUBSET_SIZES, key="attack_n")
    spec = ATTACKS[attack]
    c1, c2, c3, c4 = st.columns(4)
    params: dict = {}
    if spec.kind != "minimal":
        params["eps_max"] = c1.number_input(f"Largest ε ({NORM_SYMBOLS[spec.norm]})", 0.01,
                                            {"linf": 1.0, "l2": 28.0, "l1": 784.0}[spec.norm], EPS_MAX[spec.norm], format="%.3f")
    if attack in ("pgd", "pgd_l2"):
        params["steps"] = c2.number_input("Steps", 1, 1000, DEFAULT_PARAMS[attack]["steps"])
        params["restarts"] = c3.number_input("Restarts", 1, 20, DEFAULT_PARAMS[attack]["restarts"])
    elif attack.startswith("apgd"):
        params["steps"] = c2.number_input("Steps", 1, 1000, DEFAULT_PARAMS[attack]["steps"])
    elif attack == "square":
        params["n_queries"] = c2.number_input("Queries per image", 10, 20000, DEFAULT_PARAMS[attack]["n_queries"])
    elif attack in ("cw_l2", "ead"):
        params["steps"] = c2.number_input("Steps per search", 10, 2000, DEFAULT_PARAMS[attack]["steps"])
    seed = c4.number_input("Seed", 0, 2**31 - 1, 0)
    st.caption(attack_caption(attack))

if not model_ids:
    st.info("Pick at least one model.")
    st.stop()

x, y = data.test_x[:n_images], data.test_y[:n_images]
params_key = tuple(sorted(params.items()))
keys = {m: EvalKey(m, attack, params_key, n_images, int(seed)) for m in model_ids}
min_eps = {m: v for m in model_ids if (v := cache.get(keys[m])) is not None}  # computed models, in the picker's order
missing = [m for m in model_ids if m not in min_eps]
runner = job_runner()


def minimal_eps_job(model_id: str, attack: str, seed: int, n_images: int, params: dict):
    """A job for the server's runner: one model's per-image minimal eps, cached beside the model when complete."""
    xs, ys = data.test_x[:n_images], data.test_y[:n_images]

    def run(ctx):
        # ctx.progress raises JobCancelled once nobody wants the result: the search stops, nothing is cached.
        return cached_minimal_eps(store, cache, model_id, xs, ys, attack=attack, seed=seed,
                                  on_progress=ctx.progress, **params)
    return run


def job_key(key: EvalKey) -> str:
    return f"minimal-eps:{store.root}:{key.digest()}"


if missing:
    # Above the curves. The work runs in the server's job runner (one queue for every visitor, identical requests
    # once), so the curves already computed and every section below stay usable while it runs.
    status = st.container()
    status.warning(f"Not computed yet for {len(missing)} model(s): {', '.join(plain(names[m]) for m in missing)}. "
                   "Computing the per-image minimal ε takes a while the first time; afterwards every view is instant.",
                   icon=":material/hourglass:")
    work = Work("minimal_eps", images=n_images, attack=attack, params=params)
    if refusal := visitor_work_error(work):
        status.caption(refusal)
    if status.button(f"Compute ({n_images} images × {len(missing)} model(s))", type="primary", icon=":material/bolt:",
                     disabled=refusal is not None):
        for m in missing:
            if submit_job(job_key(keys[m]), minimal_eps_job(m, attack, int(seed), n_images, params), work=work,
                          label=f"{names[m]} · {attack_label(attack)} · {n_images} images", container=status) is None:
                break  # refused (a quota, a full queue): submit_job said why
    jobs = {m: runner.get(job_key(keys[m])) for m in missing}
    for m, job in jobs.items():
        if job is not None and job.status == "failed":
            status.error(f"Computing {plain(names[m])} failed: {plain(job.error)}. Nothing was cached.",
                         icon=":material/error:")
        elif job is not None and job.status == "cancelled":
            status.info(f"{plain(names[m])}: cancelled. Nothing was cached: results are saved only once a computation is "
                        "complete.", icon=":material/stop_circle:")
    active = [j.key for j in jobs.values() if j is not None and j.status in ("queued", "running")]
    if active:
        with status:
            job_status(active, section="curves")

gallery_todo: list = []  # (key, model id, images' cached minimal eps or None) still to craft, at the end of the page


@st.cache_resource(show_spinner=False, max_entries=64)
def curve_summary(digests: tuple, model_names: tuple, eps_max_param, norm: str, attack: str, _min_eps: tuple):
    """Everything the page derives from cached minimal eps (the slider's grid, the curves, the table's rows and the
    sanity warnings), once per server for a set of cached results (``digests``: their keys; a key's content never
    changes), not at every visitor's run: each tensor operation hands the interpreter lock to the other sessions'
    threads, which with a room of students turned these microseconds into tens of milliseconds per run."""
    by_name = dict(zip(model_names, _min_eps))
    eps_max = eps_max_param or max(float(v[torch.isfinite(v)].max()) if torch.isfinite(v).any() else 1.0
                                   for v in _min_eps)
    eps_frames = np.linspace(0, eps_max, FRAMES).round(6).tolist()
    curves = {n: accuracy_at(v, eps_frames).tolist() for n, v in by_name.items()}
    rows = []
    for n, v in by_name.items():
        stats = perturbation_stats(v)
        rows.append({"Model": n, "Clean accuracy": float(accuracy_at(v, [0.0])[0]),
                     **{f"Accuracy at ε={e:g}": float(accuracy_at(v, [e])[0]) for e in np.linspace(0, eps_max, 5)[1:].round(4)},
                     f"Median minimal {NORM_SYMBOLS[norm]}": stats["median"], "Q25": stats["q25"], "Q75": stats["q75"],
                     "Broken": f"{stats['n']}/{len(v)}"})
    warnings = sanity_warnings({plain(n): v for n, v in by_name.items()}, attack=attack, eps_max=eps_max)  # Markdown
    return eps_max, eps_frames, curves, rows, warnings


# The gradient-masking path opens on the comparison: the curves wait with the rest of the page.
if min_eps and (lecture_focus() != "comparison" or rest_shown("attack")):
    eps_max, eps_frames, curves, rows, warnings = curve_summary(
        tuple(keys[m].digest() for m in min_eps), tuple(names[m] for m in min_eps), params.get("eps_max"), spec.norm,
        attack, tuple(min_eps.values()))

    @st.cache_resource(show_spinner=False, max_entries=16)
    def slider_figure(eps_frames: tuple, curves_items: tuple, norm: str, gallery_keys: tuple, model_names: tuple,
                      class_names: tuple, projector: bool, first_screen: bool):
        """The figure, built once per (curves, galleries, layout): a rerun with nothing new only re-sends it.
        ``first_screen``: it must fit under the title of a 1280x720 screen (a lecture path, a projector)."""
        blocks = [{**galleries[k], "model": name} for k, name in zip(gallery_keys, model_names)]
        return shared_figure(eps_slider_figure(list(eps_frames), {n: list(c) for n, c in curves_items}, norm=norm,
                                              galleries=blocks, class_names=list(class_names), projector=projector,
                                              height=(480 if projector else 510) if first_screen else None))

    curves_box = st.container(border=not folded_controls())
    with settings_box("Gallery: models and images", folded[1]) if folded_controls() else curves_box:
        g1, g2, g3, g4 = st.columns([4, 2, 2, 3])
        ready = list(min_eps)
        # A lecture path shows every model it names (up to three): the DeepDefense path compares three.
        gallery_models = g1.multiselect(
            "Gallery models", ready, default=ready[:GALLERY_MODELS if lecture_focus() else 2], format_func=names.get,
            max_selections=GALLERY_MODELS, wrap=True,
            help="One block of digits per model, all moved by the same slider: compare models at the same ε.")
        pick = g2.radio("Gallery images", ["By index", "By class"], horizontal=True,
                        help=f"The gallery shows {GALLERY_SIZE} test images: consecutive ones from an index, or those of one class.")
        if pick == "By index":
            start = g3.number_input("First test image", 0, len(data.test_x) - GALLERY_SIZE, 0, step=GALLERY_SIZE)
            indices = tuple(range(int(start), int(start) + GALLERY_SIZE))
        else:
            chosen = g3.selectbox("Class", range(len(data.info.class_names)), format_func=lambda c: data.info.class_names[c])
            indices = tuple((data.test_y == chosen).nonzero().flatten()[:GALLERY_SIZE].tolist())
        g4.caption("Drag the slider: curves, accuracies and every model's digits follow in your browser. Each digit "
                   "shows the perturbation that breaks it at its minimal ε (scaled down below it), the predicted class "
                   "(green: still correct) and the perturbation ×10.")
        gallery_keys: list = []
        if data.info.shape[0] == 1:
            for m in gallery_models:
                key = (m, attack, params_key, indices, tuple(eps_frames), int(seed), n_images, dataset)
                gallery_keys.append(key)
                if key not in galleries:
                    # The curves' own minimal eps when the images are among those computed: no search needed.
                    known = min_eps[m][list(indices)] if max(indices) < n_images else None
                    gallery_todo.append((key, m, known))
    with curves_box:
        shown = [] if gallery_todo else gallery_keys  # no digits at all rather than another model's or images' digits
        # The gallery's progress bar, filled at the end of the page: under the figure on a first screen (a lecture
        # path, a projector), where it must not push the curves down.
        gallery_slot = None if folded_controls() else st.empty()
        figure = slider_figure(tuple(eps_frames), tuple((n, tuple(c)) for n, c in curves.items()), spec.norm,
                               tuple(shown), tuple(names[k[0]] for k in shown), tuple(data.info.class_names),
                               presenting(), folded_controls())
        st.plotly_chart(figure, key="eps_slider", config={"displayModeBar": False})  # (laid out for the projector)
        gallery_slot = gallery_slot or st.empty()
    elapsed_ms = 1000 * (time.perf_counter() - page_started)

    st.dataframe(shared_table(rows), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="percent") for c in rows[0] if c.startswith(("Clean", "Accuracy"))})
    st.caption(f"{n_images} test images · seed {seed} · curves from cached per-image minimal ε · page run up to here "
               f"{elapsed_ms:.0f} ms (longer only the first time a gallery or figure is built).")

    for w in warnings:
        st.warning(w, icon=":material/report:")

    c1, c2 = st.columns(2)
    # Both files are built on click, not at every run (as the gallery's below): few of a room's students download.

    def curves_csv(curves=curves, eps_frames=eps_frames) -> str:
        return "eps," + ",".join(curves) + "\n" + "\n".join(
            f"{e}," + ",".join(f"{curves[n][i]:.6f}" for n in curves) for i, e in enumerate(eps_frames))

    def curves_json(curves=curves, eps_frames=eps_frames, min_eps=dict(min_eps), params=dict(params)) -> str:
        return json.dumps({"attack": attack, "norm": spec.norm, "params": params, "n_images": n_images, "seed": int(seed),
                           "eps": eps_frames, "accuracy": curves,
                           "min_eps": {names[m]: [x if np.isfinite(x) else None for x in v.tolist()]
                                       for m, v in min_eps.items()}})
    c1.download_button("Download curves (CSV)", curves_csv, file_name=f"robust_accuracy_{attack}.csv", mime="text/csv",
                       icon=":material/download:", on_click="ignore")
    c2.download_button("Download curves and minimal ε (JSON)", curves_json, file_name=f"robust_accuracy_{attack}.json",
                       mime="application/json", icon=":material/download:", on_click="ignore")
    if shown:
        blocks = [galleries[k] for k in shown]

        def adversarial_npz(blocks=blocks, model_names=[names[k[0]] for k in shown]) -> bytes:
            # Built when the button is clicked, not at every run: compressing every ε's images costs ~50 ms of
            # the server's CPU, for each of a room's students, for a file few of them download.
            buffer = io.BytesIO()
            np.savez_compressed(buffer, eps=np.array(eps_frames), models=np.array(model_names),
                                indices=np.array(indices), clean=blocks[0]["clean"], labels=blocks[0]["labels"],
                                adversarial=np.stack([b["adversarial"] for b in blocks]),
                                predictions=np.stack([b["predictions"] for b in blocks]),
                                confidences=np.stack([b["confidences"] for b in blocks]))
            return buffer.getvalue()

        st.download_button("Download the gallery's adversarial examples (.npz, every ε, one row per model)", adversarial_npz,
                           file_name=f"adversarial_{attack}.npz", icon=":material/download:", on_click="ignore")

def craft_pending_gallery() -> None:
    """Craft the gallery digits still missing (gallery_todo), with a progress bar and a Stop button where the
    gallery shows, then rerun: last on the page (everything above is on screen and current while it runs), or where
    a lecture path stops the page."""
    if not gallery_todo:
        return
    todo_id = tuple(k for k, _, _ in gallery_todo)
    if st.session_state.get("stop_gallery"):
        st.session_state["gallery_paused"] = todo_id
    with gallery_slot.container():
        if st.session_state.get("gallery_paused") == todo_id:
            st.info("Gallery stopped: the curves above are complete; the digits are crafted on request.",
                    icon=":material/stop_circle:")
            if st.button("Craft the gallery", icon=":material/photo_library:"):
                st.session_state.pop("gallery_paused", None)
                st.rerun()
        else:
            b1, b2 = st.columns([5, 1])
            bar = b1.progress(0.0, text="Crafting the gallery…")
            b2.button("Stop", key="stop_gallery", icon=":material/stop:")
            for j, (key, m, known) in enumerate(gallery_todo):
                started = time.perf_counter()
                label = f"Crafting the gallery for {plain(names[m])} ({j + 1} of {len(gallery_todo)})"

                def progress(fraction, j=j, label=label, started=started):
                    bar.progress((j + fraction) / len(gallery_todo), text=progress_line(label, fraction, time.perf_counter() - started))
                lock = gallery_locks(str(store.root)).setdefault(key, threading.Lock())
                with lock:  # another visitor crafting the same gallery: wait for theirs rather than craft it again
                    if key in galleries:
                        continue
                    model = load_model(m, device=x.device)
                    index = torch.tensor(key[3], dtype=torch.long)
                    xs, ys = data.test_x[index], data.test_y[index]
                    crafted = gallery_frames(model, xs, ys, attack=attack, eps_frames=key[4], seed=int(seed), min_eps=known,
                                             on_progress=progress, **params)
                    galleries[key] = {"clean": xs[:, 0].numpy(), "labels": ys.numpy(),
                                      "adversarial": crafted["adversarial"][:, :, 0].cpu().numpy(),
                                      "predictions": crafted["predictions"].cpu().numpy(),
                                      "confidences": crafted["confidences"].cpu().numpy()}
                while len(galleries) > 24:  # 41 frames of 8 digits: ~1 MB each
                    galleries.popitem(last=False)
            st.rerun()


if lecture_focus() == "curves" and not rest_of_page("attack"):
    craft_pending_gallery()  # (the gallery is part of the path: crafted here, before the page stops)
    st.stop()  # the path's curves and gallery are the lesson; the other sections wait for a click
# The gradient-masking path opens on the comparison: the targeted section waits with the rest of the page.
if lecture_focus() != "comparison" or rest_shown("attack"):
    st.divider()
    st.subheader("Targeted: make one image read as another class")
    st.caption("The smallest L∞ ε at which a targeted attack makes each model read the image as the class you choose "
               "(bisection to 0.004, up to ε = 0.5). A robust model needs a perturbation that starts to draw the target digit.")
    TARGETED_ATTACKS = {"pgd": {"steps": 40}, "apgd_ce": {"steps": 100}, "fgsm": {}}
    t1, t2, t3 = st.columns(3)
    target_index = int(t1.number_input("Test image", 0, len(data.test_x) - 1, 0, key="target_index"))
    true_class = int(data.test_y[target_index])
    class_choices = [c for c in range(len(data.info.class_names)) if c != true_class]
    target_class = t2.selectbox(f"Read it as (true class: {data.info.class_names[true_class]})", class_choices,
                                index=class_choices.index(3) if 3 in class_choices else 0,
                                format_func=lambda c: data.info.class_names[c], key=f"target_class_{true_class}")
    target_attack = t3.selectbox("Targeted attack", list(TARGETED_ATTACKS), format_func=attack_label)


    @st.cache_data(show_spinner="Searching the smallest ε…", max_entries=256)
    def targeted_example(model_id: str, index: int, target: int, attack: str, seed: int, dataset: str):
        model = load_model(model_id)
        xi, yi = data.test_x[index : index + 1], data.test_y[index : index + 1]
        kwargs = TARGETED_ATTACKS[attack]
        eps = float(minimal_eps(model, xi, yi, attack=attack, eps_max=0.5, target=target, seed=seed, **kwargs)[0])
        if math.isfinite(eps) and eps > 0:
            adv = ATTACKS[attack](model, xi, yi, eps=eps, targeted=True, target=target, seed=seed, **kwargs)
        else:
            adv = xi
        return {"eps": eps, "clean": xi[0, 0].numpy(), "adversarial": adv[0, 0].numpy(),
                "p_clean": predict_proba(model, xi)[0].numpy(), "p_adv": predict_proba(model, adv)[0].numpy()}


    def targeted_pictures(key: tuple, ex: dict) -> tuple[bytes, bytes, bytes]:
        """The clean, attacked and change pictures of a targeted example, 112 px a side, as PNG bytes encoded once
        for every session."""
        def encode() -> tuple[bytes, ...]:
            change = np.clip((ex["adversarial"] - ex["clean"]) * 0.5 / max(ex["eps"], 1e-6) + 0.5, 0, 1)
            return tuple(png_bytes(image, size=112) for image in (ex["clean"], ex["adversarial"], change))

        return shared_output("attack_targeted", key, encode, max_entries=128)


    if data.info.shape[0] == 1:
        cols = st.columns(len(model_ids))
        for col, m in zip(cols, model_ids):
            ex = targeted_example(m, target_index, int(target_class), target_attack, int(seed), dataset)
            col.markdown(f"**{plain(names[m])}**")
            target_name = data.info.class_names[target_class]
            if ex["eps"] == 0:
                col.write(f"Already read as {target_name} without attack.")
            elif not math.isfinite(ex["eps"]):
                col.write(f"Not read as {target_name} at any ε ≤ 0.5: "
                          f"{100 * ex['p_adv'][target_class]:.0f}% for {target_name} at best.")
            else:
                col.metric("smallest ε", f"{ex['eps']:.3f}", help="L∞, pixel scale 0–1")
            i1, i2, i3 = col.columns(3)
            clean_png, adversarial_png, change_png = targeted_pictures(
                (m, target_index, int(target_class), target_attack, int(seed), dataset), ex)
            # PNG bytes as they are ("auto" would re-encode them as JPEG at every run, blurring the pixels).
            i1.image(clean_png, output_format="PNG",
                     caption=f"clean: {data.info.class_names[int(ex['p_clean'].argmax())]} {100 * ex['p_clean'].max():.0f}%")
            i2.image(adversarial_png, output_format="PNG",
                     caption=f"attacked: {data.info.class_names[int(ex['p_adv'].argmax())]} {100 * ex['p_adv'].max():.0f}%")
            i3.image(change_png, output_format="PNG", caption="perturbation (scaled to ±ε)")

with focus_section("comparison", top):
    if lecture_focus() != "comparison":
        st.divider()
    st.subheader("Compare attacks on one model")
    if lecture_focus() != "comparison":  # (the path's card and its warning say it)
        st.caption("A defence that only masks gradients looks robust to gradient attacks and falls to the gradient-free "
                   "Square attack, or even to single-step FGSM: the weakest curve is the one to believe.")
    linf_attacks = [a for a, sp in ATTACKS.items() if sp.norm == "linf" and sp.kind not in ("minimal", "ensemble")]
    cmp_controls = settings_box("Comparison: model and attacks")
    c1, c2 = cmp_controls.columns([2, 3])
    # Any network of the dataset, not only those picked above: the comparison is about one model.
    cmp_options = list(names)
    url_choice("attack_cmp", "cmp", cmp_options, model_ids[0])
    url_choices("attack_cmp_attacks", "cmp_attacks", linf_attacks, ["fgsm", "pgd", "apgd_ce", "square"])
    cmp_model = c1.selectbox("Model to compare on", cmp_options, key="attack_cmp", format_func=names.get)
    cmp_attacks = c2.multiselect("Attacks (L∞, default parameters, largest ε 0.4)", linf_attacks, key="attack_cmp_attacks",
                                 format_func=attack_label, wrap=True)
    set_url(dataset=dataset, models=model_ids, attack=attack, n=n_images, cmp=cmp_model, cmp_attacks=cmp_attacks)
    others = [e.model_id for e in networks if e.model_id != cmp_model]
    transfer_source = cmp_controls.selectbox("Also attack it with PGD examples crafted on another model (transfer, black-box)",
                                   [None] + others, format_func=lambda m: "no transfer" if m is None else names[m],
                                   help="Examples that fool the source model, replayed on this one at 8 values of ε. "
                                        "A transfer attack that beats white-box PGD means this model masks its gradients.")
    cmp_params = {a: comparison_params(a) for a in cmp_attacks}
    if coarse := [a for a in cmp_attacks if a in COMPARISON_SEARCH]:
        step = measured_eps_grid(cmp_params[coarse[0]], [])[1]
        cmp_controls.caption(f"{', '.join(ATTACKS[a].title for a in coarse)}: measured at every {step:g} of ε (markers), the other "
                   f"attacks to {EPS_MAX['linf'] / 128:.3f}. Each step of its search costs every image that stays robust its "
                   "whole query budget: the coarse grid makes it about 3× faster, and masked gradients still show. "
                   "Warnings compare all attacks at these ε. For a fine curve, pick it in the curves above.")
    cmp_keys = {a: EvalKey(cmp_model, a, tuple(sorted(p.items())), n_images, int(seed)) for a, p in cmp_params.items()}
    TRANSFER_PARAMS = {"eps_max": EPS_MAX["linf"], "steps": 40}
    transfer_label = None
    if transfer_source is not None:
        transfer_label = f"transfer:{transfer_source}:pgd"
        cmp_keys[transfer_label] = EvalKey(cmp_model, transfer_label, tuple(sorted(TRANSFER_PARAMS.items())), n_images, int(seed))
    cmp_missing = [a for a in cmp_keys if cache.get(cmp_keys[a]) is None]

    def cmp_title(a):
        return f"Transfer PGD from {names[a.split(':')[1]]}" if a.startswith("transfer:") else ATTACKS[a].label

    def transfer_job(source_id: str, target_id: str, seed: int, n_images: int):
        xs, ys = data.test_x[:n_images], data.test_y[:n_images]

        def run(ctx):
            return cached_transfer_eps(store, cache, source_id, target_id, xs, ys, attack="pgd", seed=seed,
                                       on_progress=ctx.progress, **TRANSFER_PARAMS)
        return run


    cmp_work = {a: Work("minimal_eps", images=n_images, attack=a,
                        params=TRANSFER_PARAMS if a.startswith("transfer:") else cmp_params[a]) for a in cmp_missing}
    cmp_refusal = next((r for w in cmp_work.values() if (r := visitor_work_error(w))), None)
    if cmp_missing and cmp_refusal:
        st.caption(cmp_refusal)
    if cmp_missing and st.button(plain(f"Compute {', '.join(cmp_title(a) for a in cmp_missing)} on {names[cmp_model]}"),
                                 icon=":material/bolt:", disabled=cmp_refusal is not None):
        for a in cmp_missing:
            fn = (transfer_job(transfer_source, cmp_model, int(seed), n_images) if a.startswith("transfer:")
                  else minimal_eps_job(cmp_model, a, int(seed), n_images, cmp_params[a]))
            if submit_job(job_key(cmp_keys[a]), fn, label=f"{names[cmp_model]} · {cmp_title(a)}", work=cmp_work[a]) is None:
                break  # refused: submit_job said why
    cmp_jobs = {a: runner.get(job_key(cmp_keys[a])) for a in cmp_missing}
    for a, job in cmp_jobs.items():
        if job is not None and job.status == "failed":
            st.error(f"{plain(cmp_title(a))} failed: {plain(job.error)}. Nothing was cached.", icon=":material/error:")
    if cmp_active := [j.key for j in cmp_jobs.values() if j is not None and j.status in ("queued", "running")]:
        job_status(cmp_active, section="comparison")
    ready_cmp = {a: cache.get(cmp_keys[a]) for a in cmp_keys if cache.get(cmp_keys[a]) is not None}

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
                          xaxis_title="ε (L∞, pixel scale 0–1)", yaxis=dict(title="accuracy under attack", tickformat=".0%", range=[0, 1.02]))
        common = min(grids, key=len)
        return common, [accuracy_at(v, common).tolist() for v in _min_eps], shared_figure(fig)


    if ready_cmp:
        frames = np.linspace(0, EPS_MAX["linf"], FRAMES).round(6).tolist()
        grid, cmp_curves, fig = comparison(tuple(cmp_keys[a].digest() for a in ready_cmp), tuple(cmp_title(a) for a in ready_cmp),
                                           tuple(a.startswith("transfer:") for a in ready_cmp),
                                           tuple(tuple(frames if a.startswith("transfer:") else measured_eps_grid(cmp_params[a], frames))
                                                 for a in ready_cmp),
                                           tuple(ready_cmp.values()),
                                           (270 if presenting() else 300) if lecture_focus() == "comparison" else 380)
        by_attack = dict(zip(ready_cmp, cmp_curves))
        # On the masking path the warning is the point: above the figure, on the first screen.
        warning_slot = st.container() if lecture_focus() == "comparison" else None
        show_chart(st, fig, key="attack_comparison")
        method = training_method_of(get_store().get(cmp_model).meta)
        for w in attack_comparison_warnings(by_attack, grid, training_method=method):
            (warning_slot or st).warning(w, icon=":material/report:")
        for note in attack_comparison_notes(by_attack, grid):
            st.caption(f":material/info: {note}")
        if single_step_masking(by_attack, grid):
            with st.expander(f"{MASKING_SECTION}: what it means (from reports/deepdefense.md)", icon=":material/school:",
                             expanded=not folded_controls()):
                st.markdown(MASKING_EXPLANATION)
        if len(ready_cmp) < len(cmp_keys):
            st.caption(f"Not computed yet: {', '.join(plain(cmp_title(a)) for a in cmp_missing)}.")
    for w in sanity_of(cmp_model, dataset, min(200, n_images)):
        st.warning(w, icon=":material/report:")

if lecture_focus() == "comparison" and not rest_of_page("attack"):
    st.stop()  # the path's comparison and its warning are the lesson; AutoAttack waits for a click
# ---- AutoAttack at one eps: the reference protocol, not a curve ------------------------------------------------------
st.markdown(f"**AutoAttack on {plain(names[cmp_model])}**: the field's reference protocol (APGD-CE, APGD-T, FAB-T, Square, "
            "each later attack only on the points still robust), at one ε. Its robust accuracy is the number to "
            "report; a curve above it overstates the model.")
a1, a2, a3 = st.columns([2, 1, 3], vertical_alignment="bottom")
aa_attack = a1.selectbox("Version", ["autoattack_standard", "autoattack_fast"], format_func=attack_label,
                         key="attack_aa_version")
aa_eps = a2.number_input("ε (L∞)", 0.001, 0.5, 0.3 if dataset == "mnist" else 0.1, step=0.01, format="%.3f",
                         key="attack_aa_eps")
aa_job = SweepJob("autoattack", model_id=cmp_model, dataset=dataset, attack=aa_attack, n=n_images, seed=int(seed),
                  eps=float(aa_eps))
aa_key = f"autoattack:{store.root}:{cmp_model}:{aa_attack}:{float(aa_eps)}:{n_images}:{int(seed)}"
aa_result = read_autoattack(store, aa_job)
aa_work = Work("autoattack", images=n_images, attack=aa_attack)
if aa_result is None:
    aa_state = runner.get(aa_key)
    if aa_state is not None and aa_state.status == "failed":
        st.error(f"AutoAttack failed: {plain(aa_state.error)}. Nothing was cached.", icon=":material/error:")
    if aa_state is not None and aa_state.status in ("queued", "running"):
        job_status([aa_key], section="autoattack")
    elif a3.button(f"Run {attack_label(aa_attack)} on {n_images} images", icon=":material/bolt:",
                   disabled=(aa_refusal := visitor_work_error(aa_work)) is not None,
                   help=aa_refusal or "On a CPU, the standard version takes about a second per robust image (a few "
                        "minutes for 200 images of an adversarially trained CNN); it runs in the server's queue and is cached."):
        def run_aa(ctx, job=aa_job, root=str(store.root)):
            # Progress after each stage; a cancelled job stops at the next one and caches nothing.
            return execute_sweep_job(job, root, on_progress=ctx.progress)
        if submit_job(aa_key, run_aa, work=aa_work,
                      label=f"{names[cmp_model]} · {attack_label(aa_attack)} · ε {aa_eps:g} · {n_images} images"):
            st.rerun()
else:
    m1, m2, m3 = st.columns(3)  # (the full width: in a third of it the labels were cut)
    m1.metric("Clean accuracy", f"{100 * aa_result['clean_accuracy']:.1f}%")
    m2.metric("Robust accuracy", f"{100 * aa_result['robust_accuracy']:.1f}%",
              help="Under the whole AutoAttack chain: the points no stage broke.")
    weakest = {cmp_title(a): float(accuracy_at(v, [aa_eps])[0]) for a, v in ready_cmp.items()}
    if weakest:
        best_single, best_acc = min(weakest.items(), key=lambda kv: kv[1])
        m3.metric("Best single attack", f"{100 * best_acc:.1f}%",
                  help=f"{plain(best_single)}, from the curves above, at this ε.",
                  delta=f"{100 * (best_acc - aa_result['robust_accuracy']):+.1f} pts vs AutoAttack", delta_color="off")
    st.dataframe([{"Stage": attack_label(s["attack"]) if s["attack"] in ATTACKS else s["attack"].upper().replace("_", "-"),
                   "Points attacked": s["attacked"], "Broken": s["broken"],
                   "Robust accuracy after": s["robust_accuracy"], "Seconds": round(s["seconds"], 1)}
                  for s in aa_result["stages"]], hide_index=True, width="stretch",
                 column_config={"Robust accuracy after": st.column_config.NumberColumn(format="percent")})
    st.caption(f"{aa_result['protocol']} · first {aa_result['n_examples']} test images · cached beside the model "
               "(python -m robust_core.sweep computes the same).")

# ---- long computations, last: everything above is on screen and current while they run ------------------------------
craft_pending_gallery()
