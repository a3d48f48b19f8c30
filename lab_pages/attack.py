"""Attack page: robust accuracy against eps with an instant slider, a gallery, and attack comparisons.

One function per section; the page runs them in order (lab_pages.attack_compare holds the comparison and AutoAttack).
Everything derived from cached results is built once per server, in lab_pages.attack_results."""
import io
import json
import math
import threading
import time

import numpy as np
import streamlit as st
import torch

from lab_pages._jobs import job_panel, progress_line
from lab_pages._outputs import picture, shared_table
from lab_pages._analysis import analysis_page, default_candidates, model_labels, opened_image
from lab_pages._layout import (
    folded_controls,
    lecture_focus,
    presenting,
    rest_of_page,
    rest_shown,
    settings_box,
    settings_row,
)
from lab_pages._resources import load_model
from lab_pages._text import plain
from lab_pages._url import url_choice, url_choices
from lab_pages.attack_compare import autoattack_section, comparison_section, minimal_eps_request
from lab_pages.attack_view import AttackView, PendingGallery
from lab_pages.attack_results import (
    TARGETED_ATTACKS,
    attack_caption,
    attack_label,
    curve_summary,
    eval_cache,
    gallery_locks,
    gallery_store,
    keep_gallery,
    slider_figure,
    FRAMES,
    LECTURE_FRAMES,
    targeted_example,
    targeted_pictures,
)
from lab_pages.photo_views import attack_view
from robust_core.attacks import ATTACKS, NORM_SYMBOLS, eps_ceiling
from robust_core.evaluation import CURVE_ATTACK_PARAMS, curve_eps_max
from robust_core.gallery import gallery_frames
from robust_core.gallery_cache import GalleryCache, gallery_digest

SUBSET_SIZES = [100, 200, 500, 1000, 2000, 5000, 10000]
GALLERY_SIZE = 8
GALLERY_MODELS = 3  # blocks of digits beside the curves: more would not fit a laptop screen with the slider
# The default parameters of each attack, as the controls below set them (the library's, which the shipped
# evaluations and sweeps use too): the comparison view uses the same dictionaries, so every view shares cache entries.
DEFAULT_PARAMS = CURVE_ATTACK_PARAMS


def attack_settings(view_parts) -> AttackView:
    """The models, attack and images, from the address first (a lecture path, a shared link)."""
    dataset, store, data, networks, names, top, folded = view_parts
    with settings_box("Models, attack and images", folded[0]):
        c1, c2, c3 = st.columns([3, 2, 1])
        default_models = ([st.session_state["model_id"]] if st.session_state.get("model_id") in names
                          else [default_candidates(networks)[0].model_id])  # never another visitor's model
        url_choices("attack_models", "models", list(names), default_models, limit=6)
        # AutoAttack is a chain run at a fixed ε (the CLI: python -m robust_core.evaluate --attack autoattack_standard);
        # the per-image minimal-ε search these curves rest on would run the whole chain at every bisection step.
        page_attacks = [a for a, sp in ATTACKS.items() if sp.kind != "ensemble"]
        url_choice("attack_attack", "attack", page_attacks, "pgd")
        url_choice("attack_n", "n", SUBSET_SIZES, 500)
        model_ids = c1.multiselect("Models", list(names), key="attack_models",
                                   format_func=names.get, max_selections=6, wrap=True)  # (every name shows)
        attack = c2.selectbox("Attack", page_attacks, key="attack_attack", format_func=attack_label)
        n_images = c3.selectbox("Test images", SUBSET_SIZES, key="attack_n")
        spec = ATTACKS[attack]
        c1, c2, c3, c4 = st.columns(4)
        params: dict = {}
        if spec.kind != "minimal":
            params["eps_max"] = c1.number_input(f"Largest ε ({NORM_SYMBOLS[spec.norm]})", 0.01,
                                                eps_ceiling(spec.norm, data.info.shape),
                                                curve_eps_max(spec.norm, dataset), format="%.3f")
        for column, p in zip((c2, c3), spec.tunable):  # the parameters its spec lets a user set, each in a column
            params[p.name] = column.number_input(p.label, p.low, p.high, DEFAULT_PARAMS[attack][p.name])
        seed = c4.number_input("Seed", 0, 2**31 - 1, 0)
        if dataset == "cifar10":  # ε in pixel units of 0-1, as everywhere; the field quotes CIFAR-10's in 1/255
            st.caption("CIFAR-10's usual radii: L∞ 8/255 ≈ 0.031 (2/255 ≈ 0.008, 4/255 ≈ 0.016, 16/255 ≈ 0.063), "
                       "L2 0.5.")
        st.caption(attack_caption(attack))
    return AttackView(dataset, store, data, networks, names, eval_cache(str(store.root)), model_ids, attack, params,
                      int(n_images), int(seed), top, folded)


def minimal_eps_status(view: AttackView, min_eps: dict) -> None:
    """Above the curves, for the models not computed yet: the button that queues them in the server's runner (one
    queue for every visitor, identical requests once) and their progress, while everything else stays usable."""
    missing = [m for m in view.model_ids if m not in min_eps]
    if not missing:
        return
    status = st.container()
    status.warning(f"Not computed yet for {len(missing)} model(s): {', '.join(plain(view.names[m]) for m in missing)}. "
                   "Computing the per-image minimal ε takes a while the first time; afterwards every view is instant.",
                   icon=":material/hourglass:")
    requests = [minimal_eps_request(view, m, view.attack, view.params, view.key(m),
                                    label=f"{view.names[m]} · {attack_label(view.attack)} · {view.n_images} images")
                for m in missing]
    job_panel(status, requests, button=f"Compute ({view.n_images} images × {len(missing)} model(s))", section="curves",
              primary=True)


def curves_section(view: AttackView, min_eps: dict, started: float) -> PendingGallery:
    """The slider figure (curves and gallery digits, all moved in the browser), its table, warnings and files."""
    galleries = gallery_store(str(view.store.root))
    digests, frames = tuple(view.key(m).digest() for m in min_eps), (LECTURE_FRAMES if lecture_focus() == "curves"
                                                                     else FRAMES)
    eps_max, eps_frames, curves, rows, warnings = curve_summary(
        digests, tuple(view.names[m] for m in min_eps), view.params.get("eps_max"), view.spec.norm, view.attack,
        tuple(min_eps.values()), frames)
    data, names = view.data, view.names
    todo: list = []
    curves_box = st.container(border=not folded_controls())
    with settings_box("Gallery: models and images", view.folded[1]) if folded_controls() else curves_box:
        g1, g2, g3, g4 = st.columns([4, 2, 2, 3])
        ready = list(min_eps)
        # A lecture path shows every model it names (up to three): the DeepDefense path compares three.
        gallery_models = g1.multiselect(
            "Gallery models", ready, default=ready[:GALLERY_MODELS if lecture_focus() else 2], format_func=names.get,
            max_selections=GALLERY_MODELS, wrap=True,
            help="One block of digits per model, all moved by the same slider: compare models at the same ε.")
        pick = g2.radio("Gallery images", ["By index", "By class"], horizontal=True,
                        help=f"The gallery shows {GALLERY_SIZE} test images: consecutive ones from an index, or those "
                             "of one class.")
        if pick == "By index":
            start = g3.number_input("First test image", 0, len(data.test_x) - GALLERY_SIZE, 0, step=GALLERY_SIZE)
            indices = tuple(range(int(start), int(start) + GALLERY_SIZE))
        else:
            chosen = g3.selectbox("Class", range(len(data.info.class_names)),
                                  format_func=lambda c: data.info.class_names[c])
            indices = tuple((data.test_y == chosen).nonzero().flatten()[:GALLERY_SIZE].tolist())
        g4.caption("Drag the slider: curves, accuracies and every model's digits follow in your browser. Each digit "
                   "shows the perturbation that breaks it at its minimal ε (scaled down below it), the predicted class "
                   "(green: still correct) and the perturbation ×10.")
        gallery_keys: list = []
        if data.info.shape[0] in (1, 3):  # grey digits, or colour images (CIFAR-10)
            for m in gallery_models:
                key = (m, view.attack, view.params_key, indices, tuple(eps_frames), view.seed, view.n_images,
                       view.dataset)
                gallery_keys.append(key)
                if key not in galleries and (stored := GalleryCache(view.store).get(
                        m, gallery_digest(view.key(m).digest(), indices, eps_frames))) is not None:
                    keep_gallery(str(view.store.root), key, stored)  # crafted by another replica of this store
                if key not in galleries:
                    # The curves' own minimal eps when the images are among those computed: no search needed.
                    known = min_eps[m][list(indices)] if max(indices) < view.n_images else None
                    todo.append((key, m, known))
    with curves_box:
        shown = [] if todo else gallery_keys  # no digits at all rather than another model's or images' digits
        # The gallery's progress bar, filled at the end of the page: under the figure on a first screen (a lecture
        # path, a projector), where it must not push the curves down.
        slot = None if folded_controls() else st.empty()
        figure = slider_figure((digests, tuple(curves), view.params.get("eps_max"), frames), tuple(eps_frames),
                               tuple((n, tuple(c)) for n, c in curves.items()), view.spec.norm,
                               tuple(shown), tuple(names[k[0]] for k in shown), tuple(data.info.short_class_names),
                               presenting(), folded_controls(), str(view.store.root))
        st.plotly_chart(figure, key="eps_slider", config={"displayModeBar": False})  # (laid out for the projector)
        slot = slot or st.empty()
    elapsed_ms = 1000 * (time.perf_counter() - started)

    percent = st.column_config.NumberColumn(format="percent")
    st.dataframe(shared_table(rows), hide_index=True, width="stretch",
                 column_config={c: percent for c in rows[0] if c.startswith(("Clean", "Accuracy"))})
    st.caption(f"{view.n_images} test images · seed {view.seed} · curves from cached per-image minimal ε · page run up "
               f"to here {elapsed_ms:.0f} ms (longer only the first time a gallery or figure is built).")
    for w in warnings:
        st.warning(w, icon=":material/report:")
    if rest_shown("attack"):  # (on a lecture path the files wait behind "Show the rest of the page")
        curve_files(view, eps_frames, curves, min_eps, [galleries[k] for k in shown], [names[k[0]] for k in shown],
                    indices)
    return PendingGallery(todo, slot)


def curve_files(view: AttackView, eps_frames, curves, min_eps, blocks, block_names, indices) -> None:
    """The downloads: curves as CSV and JSON, the gallery's adversarial digits as .npz. Each is built on click, not at
    every run: few of a room's students download, and compressing every ε's images costs ~50 ms of the server's CPU."""
    attack, names = view.attack, view.names

    def curves_csv() -> str:
        return "eps," + ",".join(curves) + "\n" + "\n".join(
            f"{e}," + ",".join(f"{curves[n][i]:.6f}" for n in curves) for i, e in enumerate(eps_frames))

    def curves_json() -> str:
        return json.dumps({"attack": attack, "norm": view.spec.norm, "params": dict(view.params),
                           "n_images": view.n_images, "seed": view.seed, "eps": eps_frames, "accuracy": curves,
                           "min_eps": {names[m]: [x if np.isfinite(x) else None for x in v.tolist()]
                                       for m, v in min_eps.items()}})

    c1, c2 = st.columns(2)
    c1.download_button("Download curves (CSV)", curves_csv, file_name=f"robust_accuracy_{attack}.csv", mime="text/csv",
                       icon=":material/download:", on_click="ignore")
    c2.download_button("Download curves and minimal ε (JSON)", curves_json, file_name=f"robust_accuracy_{attack}.json",
                       mime="application/json", icon=":material/download:", on_click="ignore")
    if not blocks:
        return

    def adversarial_npz() -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, eps=np.array(eps_frames), models=np.array(block_names),
                            indices=np.array(indices), clean=blocks[0]["clean"], labels=blocks[0]["labels"],
                            adversarial=np.stack([b["adversarial"] for b in blocks]),
                            predictions=np.stack([b["predictions"] for b in blocks]),
                            confidences=np.stack([b["confidences"] for b in blocks]))
        return buffer.getvalue()

    st.download_button("Download the gallery's adversarial examples (.npz, every ε, one row per model)",
                       adversarial_npz, file_name=f"adversarial_{attack}.npz", icon=":material/download:",
                       on_click="ignore")


def craft_pending_gallery(view: AttackView, pending: PendingGallery | None) -> None:
    """Craft the gallery digits still missing, with a progress bar and a Stop button where the gallery shows, then
    rerun: last on the page (everything above is on screen and current while it runs), or where a lecture path
    stops the page."""
    if pending is None or not pending.todo:
        return
    todo, root = pending.todo, str(view.store.root)
    todo_id = tuple(k for k, _, _ in todo)
    if st.session_state.get("stop_gallery"):
        st.session_state["gallery_paused"] = todo_id
    with pending.slot.container():
        if st.session_state.get("gallery_paused") == todo_id:
            st.info("Gallery stopped: the curves above are complete; the digits are crafted on request.",
                    icon=":material/stop_circle:")
            if st.button("Craft the gallery", icon=":material/photo_library:"):
                st.session_state.pop("gallery_paused", None)
                st.rerun()
            return
        b1, b2 = st.columns([5, 1])
        bar = b1.progress(0.0, text="Crafting the gallery…")
        b2.button("Stop", key="stop_gallery", icon=":material/stop:")
        for j, (key, m, known) in enumerate(todo):
            started = time.perf_counter()
            label = f"Crafting the gallery for {plain(view.names[m])} ({j + 1} of {len(todo)})"

            def progress(fraction, j=j, label=label, started=started):
                bar.progress((j + fraction) / len(todo),
                             text=progress_line(label, fraction, time.perf_counter() - started))
            lock = gallery_locks(root).setdefault(key, threading.Lock())
            with lock:  # another visitor crafting the same gallery: wait for theirs rather than craft it again
                if key in gallery_store(root):
                    continue

                def craft(m=m, key=key, known=known, progress=progress) -> dict:
                    model = load_model(m, device=view.data.test_x.device)
                    index = torch.tensor(key[3], dtype=torch.long)
                    xs, ys = view.data.test_x[index], view.data.test_y[index]
                    crafted = gallery_frames(model, xs, ys, attack=view.attack, eps_frames=key[4], seed=view.seed,
                                             min_eps=known, on_progress=progress, **view.params)
                    return {"clean": picture(xs), "labels": ys.numpy(),
                            "adversarial": picture(crafted["adversarial"]),
                            "predictions": crafted["predictions"].cpu().numpy(),
                            "confidences": crafted["confidences"].cpu().numpy()}
                # On disk beside the model, once for every replica sharing the store: another replica crafting it
                # meanwhile is waited for, then read.
                digest = gallery_digest(view.key(m).digest(), key[3], key[4])
                keep_gallery(root, key, GalleryCache(view.store).get_or_craft(m, digest, craft))
        st.rerun()


def targeted_section(view: AttackView) -> None:
    """The smallest targeted ε per model for one test image, with the clean, attacked and change pictures."""
    data, names = view.data, view.names
    st.divider()
    st.subheader("Targeted: make one image read as another class")
    st.caption("The smallest L∞ ε at which a targeted attack makes each model read the image as the class you choose "
               "(bisection to 0.004, up to ε = 0.5). A robust model needs a perturbation that starts to draw the "
               "target digit.")
    t1, t2, t3 = st.columns(3)
    target_index = int(t1.number_input("Test image", 0, len(data.test_x) - 1, 0, key="target_index"))
    true_class = int(data.test_y[target_index])
    class_choices = [c for c in range(len(data.info.class_names)) if c != true_class]
    target_class = t2.selectbox(f"Read it as (true class: {data.info.class_names[true_class]})", class_choices,
                                index=class_choices.index(3) if 3 in class_choices else 0,
                                format_func=lambda c: data.info.class_names[c], key=f"target_class_{true_class}")
    target_attack = t3.selectbox("Targeted attack", list(TARGETED_ATTACKS), format_func=attack_label)
    if data.info.shape[0] != 1:
        return
    target_name = data.info.class_names[target_class]
    for col, m in zip(st.columns(len(view.model_ids)), view.model_ids):
        ex = targeted_example(m, target_index, int(target_class), target_attack, view.seed, view.dataset)
        col.markdown(f"**{plain(names[m])}**")
        if ex["eps"] == 0:
            col.write(f"Already read as {target_name} without attack.")
        elif not math.isfinite(ex["eps"]):
            col.write(f"Not read as {target_name} at any ε ≤ 0.5: "
                      f"{100 * ex['p_adv'][target_class]:.0f}% for {target_name} at best.")
        else:
            col.metric("smallest ε", f"{ex['eps']:.3f}", help="L∞, pixel scale 0–1")
        i1, i2, i3 = col.columns(3)
        clean_png, adversarial_png, change_png = targeted_pictures(
            (m, target_index, int(target_class), target_attack, view.seed, view.dataset), ex)
        p_clean, p_adv = ex["p_clean"], ex["p_adv"]
        # PNG bytes as they are ("auto" would re-encode them as JPEG at every run, blurring the pixels).
        i1.image(clean_png, output_format="PNG",
                 caption=f"clean: {data.info.class_names[int(p_clean.argmax())]} {100 * p_clean.max():.0f}%")
        i2.image(adversarial_png, output_format="PNG",
                 caption=f"attacked: {data.info.class_names[int(p_adv.argmax())]} {100 * p_adv.max():.0f}%")
        i3.image(change_png, output_format="PNG", caption="perturbation (scaled to ±ε)")


def attack_page() -> None:
    started = time.perf_counter()
    dataset, store, data, networks = analysis_page("Attack", photo_view=attack_view)
    opened = opened_image("lab_pages/attack.py", dataset)
    if opened and opened["split"] == "test":
        if opened["new"]:
            st.session_state["target_index"] = opened["index"]  # the Targeted section below starts from it
        if st.session_state.get("target_index") == opened["index"]:
            st.info(f"Test image #{opened['index']} opened from the Confidence page: the **Targeted** section below "
                    "finds the smallest ε that makes each model read it as another class.",
                    icon=":material/open_in_new:")
    # Plain text for the pickers; plain(...) where Markdown renders, plotly_text in figures.
    names = model_labels(networks)
    top = st.container()  # a lecture path's promised section draws here, first (lab_pages._layout.focus_section)
    folded = settings_row(2)  # (on a lecture path or a projector: both settings on one line)
    view = attack_settings((dataset, store, data, networks, names, top, folded))
    if not view.model_ids:
        st.info("Pick at least one model.")
        st.stop()
    # Computed models, in the picker's order.
    min_eps = {m: v for m in view.model_ids if (v := view.cache.get(view.key(m))) is not None}
    minimal_eps_status(view, min_eps)

    focus = lecture_focus()
    pending = None
    # The gradient-masking path opens on the comparison: the curves wait with the rest of the page.
    if min_eps and (focus != "comparison" or rest_shown("attack")):
        pending = curves_section(view, min_eps, started)
    if focus == "curves" and not rest_of_page("attack"):
        craft_pending_gallery(view, pending)  # (the gallery is part of the path: crafted here, before the page stops)
        st.stop()  # the path's curves and gallery are the lesson; the other sections wait for a click
    if focus != "comparison" or rest_shown("attack"):
        targeted_section(view)
    compared = comparison_section(view)
    if focus == "comparison" and not rest_of_page("attack"):
        st.stop()  # the path's comparison and its warning are the lesson; AutoAttack waits for a click
    autoattack_section(view, compared)
    # Long computations, last: everything above is on screen and current while they run.
    craft_pending_gallery(view, pending)


attack_page()
