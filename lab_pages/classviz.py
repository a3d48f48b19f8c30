"""Class Visualization page: morph a drawn digit (or noise) toward any class by gradient ascent."""
import hashlib
import time

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from lab_pages._jobs import job_runner, job_status, submit_job
from lab_pages._analysis import analysis_page, comparison_defaults, model_labels
from lab_pages._canvas import digit_canvas
from lab_pages._layout import lazy_settings_box, lecture_focus, rest_of_page, rest_shown, show_chart
from lab_pages._resources import load_model
from lab_pages._text import plain
from lab_pages._url import set_url, url_choice, url_choices, url_number
from lab_pages._outputs import picture
from lab_pages.classviz_results import morph_figure, morph_pictures
from lab_pages.photo_views import classviz_view
from robust_core.access import Work
from robust_core.attacks import eps_ceiling
from robust_core.classviz import OBJECTIVES, RECIPES, STEP_NORMS
from robust_core.classviz.compare import MorphComparison, compare_morphs
from robust_core.classviz.link import DrawingCodeError, decode_drawing, encode_drawing

RECIPE_LABELS = {"smoothed": "Smoothed sign ascent (works on robust models)", "seed": "Plain normalised gradient"}
STEP_LABELS = {"l2": "Normalised (L2)", "linf": "Sign (L∞)", "none": "Raw gradient"}
START_LABELS = {"draw": "Draw a digit", "test": "A test image", "uniform": "Uniform noise",
                "gaussian": "Gaussian noise", "zeros": "Black image"}

dataset, store, data, networks = analysis_page("Class visualization", photo_view=classviz_view)
if data.info.shape[0] not in (1, 3):
    st.info("This page shows grey or colour images: choose MNIST, Fashion-MNIST or CIFAR-10 in the sidebar.")
    st.stop()
# Digits can be drawn; colour datasets (CIFAR-10) start from a test image or noise. Pictures are shown 4× enlarged
# (112 px for 28×28 digits, 128 px for 32×32 colour), the size a projector's back row reads.
DRAWABLE = data.info.shape == (1, 28, 28)
PICTURE_PX = 4 * data.info.shape[2]
names = model_labels(networks)  # plain text for the pickers; plain(...) where Markdown renders
class_names = data.info.class_names


def read_linked_drawing() -> None:
    """The drawing an address brings (``?drawing=``, a shared link), decoded once per new value; a bad one (cut,
    altered, oversized) is kept as a message for the drawing's place, never an exception."""
    raw = st.query_params.get("drawing")
    written = st.session_state.setdefault("_url_written", {})
    if raw is None or raw == written.get("drawing"):
        return
    written["drawing"] = raw
    try:
        st.session_state["classviz_linked_drawing"] = decode_drawing(raw)
        st.session_state.pop("classviz_drawing_error", None)
    except DrawingCodeError as exc:
        st.session_state.pop("classviz_linked_drawing", None)
        st.session_state["classviz_drawing_error"] = str(exc)


settings_container, kept = lazy_settings_box("Settings", "classviz_settings")
with settings_container:
    c1, c2, c3 = kept.columns([2, 3, 2])
    # Defaults from the address (a lecture path, a shared link); the state goes back into it below.
    starts = [s for s in START_LABELS if DRAWABLE or s != "draw"]
    url_choice("classviz_start", "start", starts, "draw" if DRAWABLE else "test")
    url_choices("classviz_models", "models", list(names), comparison_defaults(networks), limit=4)
    url_choice("classviz_target", "target", list(range(len(class_names))), min(9, len(class_names) - 1))
    url_number("classviz_index", "index", 0, len(data.test_x) - 1, 0)
    if kept.drawn:
        c1.radio("Start from", starts, key="classviz_start", format_func=START_LABELS.get)
        c2.multiselect("Models (side by side)", list(names), key="classviz_models", format_func=names.get,
                       max_selections=4, wrap=True)
        c3.selectbox("Target class", range(len(class_names)), key="classviz_target",
                     format_func=lambda c: class_names[c])
    start_kind, model_ids = st.session_state["classviz_start"], st.session_state["classviz_models"]
    target = st.session_state["classviz_target"]
    start_image = None
    index = st.session_state["classviz_index"]
    read_linked_drawing()
    drawing_code = None
    if start_kind == "draw":
        linked = st.session_state.get("classviz_linked_drawing")
        if linked is not None:
            # A shared link's drawing (the canvas cannot be given strokes back): morphed as it is, until a new one.
            if kept.drawn:
                c1, c2 = st.columns([1, 4], vertical_alignment="center")
                c1.image(linked[0, 0].numpy(), width=112, clamp=True, caption="the drawing from the link")
                c2.button("Draw a new digit", icon=":material/draw:", key="classviz_new_drawing",
                          on_click=lambda: st.session_state.pop("classviz_linked_drawing", None))
            start_image = linked
        elif kept.drawn:
            problem = st.session_state.get("classviz_drawing_error")
            if problem:
                st.warning(f"{problem[:1].upper()}{problem[1:]}: it could not be restored. Draw the digit again.",
                           icon=":material/link_off:")
            start_image = digit_canvas(st, key="classviz_draw")
            if start_image is not None:
                st.session_state.pop("classviz_drawing_error", None)
        if start_image is not None:
            # The morph starts from the link's 16 grey levels, so a copied link reproduces this very morph.
            drawing_code = encode_drawing(start_image)
            start_image = decode_drawing(drawing_code)
    elif start_kind == "test":
        if kept.drawn:
            index = st.number_input("Test image", 0, len(data.test_x) - 1, key="classviz_index")
            st.image(picture(data.test_x[int(index)]), width=3 * data.info.shape[2], clamp=True,
                     caption=f"test image {index}: {class_names[int(data.test_y[int(index)])]}")
        start_image = data.test_x[int(index)]
    recipe = kept(st.radio, "classviz_recipe", "smoothed", "Ascent", list(RECIPE_LABELS),
                  format_func=RECIPE_LABELS.get, horizontal=True,
                  help="Smoothed: the gradient is averaged over 16 noisy copies (σ = 0.3) and every pixel moves by "
                       "the sign of its gradient. Adversarially trained MNIST models ignore dark pixels (their "
                       "gradient there is ~10⁻⁸ of the strokes'), so a plain normalised gradient can only reshape "
                       "existing strokes; the smoothed gradient lets them draw new ones. Plain normalised "
                       "gradient: −log p along ∇/‖∇‖, step 0.1.")
    defaults = RECIPES[recipe]
    # Built only once opened (its 18 widgets were most of a view's elements); the defaults give a good result.
    advanced_box, advanced = kept.expander("Objective, step and regularisers (the defaults give a good result in one "
                                           "click)", "classviz_advanced")
    with advanced_box:
        c1, c2, c3, c4 = advanced.columns(4)
        loss = advanced(c1.selectbox, f"cv_loss_{recipe}", defaults["loss"], "Objective", list(OBJECTIVES),
                        format_func=lambda k: OBJECTIVES[k].split(" (")[0],
                        help="\n\n".join(f"**{k}**: {v}" for k, v in OBJECTIVES.items()))
        step_norm = advanced(c2.selectbox, f"cv_step_{recipe}", defaults["step_norm"], "Step", list(STEP_NORMS),
                             format_func=STEP_LABELS.get,
                             help="\n\n".join(f"**{STEP_LABELS[k]}**: {v}" for k, v in STEP_NORMS.items()))
        lr = advanced(c3.number_input, f"cv_lr_{recipe}", float(defaults["lr"]), "Step size", 0.001, 5.0,
                      format="%.3f", help="Pixel units per step (0-1 scale) with sign steps; L2 length per step when "
                                          "normalised.")
        steps = advanced(c4.number_input, f"cv_steps_{recipe}", int(defaults["steps"]), "Max steps", 1, 2000)
        c1, c2, c3, c4 = advanced.columns(4)
        noise_sigma = advanced(c1.number_input, f"cv_sigma_{recipe}", float(defaults["noise_sigma"]),
                               "Gradient smoothing noise σ", 0.0, 1.0, step=0.05,
                               help="0: plain gradient. >0: the loss is averaged over noisy copies of the image "
                                    "(the expectation randomised smoothing uses).")
        noise_samples = advanced(c2.number_input, f"cv_samples_{recipe}", int(defaults["noise_samples"]),
                                 "Noisy copies per step", 1, 64, disabled=noise_sigma == 0)
        l2 = advanced(c3.number_input, "cv_l2", 0.0, "L2 weight", 0.0, 10.0, step=0.01)
        tv = advanced(c4.number_input, "cv_tv", 0.0, "Total variation weight", 0.0, 10.0, step=0.01)
        c1, c2, c3, c4 = advanced.columns(4)
        jitter_pixels = advanced(c1.number_input, "cv_jitter", 0, "Jitter (pixels)", 0, 4)
        blur_every = advanced(c2.number_input, "cv_blur", 0, "Blur every k steps (0: never)", 0, 100)
        threshold = advanced(c3.number_input, "cv_threshold", 0.99, "Stop at target probability", 0.5, 1.0,
                             step=0.01)
        seed = advanced(c4.number_input, "cv_seed", 0, "Seed", 0, 2**31 - 1)
        c1, c2, c3, c4 = advanced.columns(4)
        budget_norm = advanced(c1.selectbox, "cv_budget_norm", "none", "Budget around the start",
                               ["none", "linf", "l2"], format_func={"none": "none", "linf": "L∞", "l2": "L2"}.get)
        # The largest meaningful ε of the norm for these images (L∞ 1, L2 the diagonal of [0, 1]^(C·H·W)); one
        # value per norm, so a change of norm never leaves an ε above the new ceiling.
        budget_eps = advanced(c2.number_input, f"cv_budget_eps_{budget_norm}", 0.2 if budget_norm != "l2" else 2.0,
                              "Budget ε", 0.01,
                              eps_ceiling(budget_norm if budget_norm != "none" else "l2", data.info.shape),
                              disabled=budget_norm == "none")
    c1, c2 = kept.columns(2)
    all_targets = kept(c1.toggle, "classviz_all_targets", False,
                       "All targets: morph the start toward each class at once (first model)")
    with_knn = kept(c2.toggle, "classviz_with_knn", False, "Compare with a gradient-free k-NN morph")

set_url(dataset=dataset, models=model_ids, start=start_kind, index=int(index), target=int(target))
if drawing_code is not None:
    set_url(drawing=drawing_code)
elif "drawing" in st.query_params:
    del st.query_params["drawing"]
    st.session_state.setdefault("_url_written", {}).pop("drawing", None)
if start_kind in ("draw", "test") and start_image is None:
    if not kept.drawn:
        st.info("Open the **Settings** above to draw the digit to morph.", icon=":material/draw:")
    st.stop()
if not model_ids:
    st.info("Pick at least one model.")
    st.stop()
budget = None if budget_norm == "none" else (budget_norm, float(budget_eps))
if budget is not None:
    st.info("With a budget around the start, the result is a **targeted adversarial example**: the smallest change "
            "that makes the model read the target class. The Attack page measures such ε over the whole test set.",
            icon=":material/bolt:")
settings = dict(start="image" if start_image is not None else start_kind, image=start_image, steps=int(steps),
                lr=float(lr), loss=loss, step_norm=step_norm, noise_sigma=float(noise_sigma),
                noise_samples=int(noise_samples), l2=float(l2), tv=float(tv), jitter_pixels=int(jitter_pixels),
                blur_every=int(blur_every), budget=budget, threshold=float(threshold), seed=int(seed))
# The start image by a digest of its pixels (two drawings with the same pixel sum are different morphs), in NumPy:
# a torch operation in every student's page run wakes torch's thread pool.
run_key = (tuple(model_ids), int(target), all_targets, with_knn,
           repr({k: (hashlib.sha256(v.detach().cpu().numpy().tobytes()).hexdigest() if torch.is_tensor(v) else v)
                 for k, v in settings.items()}))

def morph_job():
    """The morph as a job of the server's runner (short lane): students who press Morph at once are served one after
    the other at full speed, and identical requests (a lecture path's defaults) run once. Each model's result is
    published in the job's details as soon as it is ready, for the page to show while the next model runs."""
    chosen = {names[m]: load_model(m) for m in model_ids}

    def run(ctx):
        def publish(partial: MorphComparison) -> None:
            ctx.job.details["comparison"] = partial
            ctx.check()

        return compare_morphs(chosen, target=int(target), train_x=data.train_x, train_y=data.train_y,
                              all_targets=all_targets, with_knn=with_knn, num_classes=len(class_names),
                              on_progress=ctx.progress, on_result=publish, **settings)
    return run


def shown_models(comparison: MorphComparison) -> list[str]:
    return [m for m in model_ids if names[m] in comparison.results]


def show_comparison(comparison: MorphComparison) -> None:
    """The models' results that are ready (all of them once the job is done), then the grid and the k-NN morph."""
    timings = comparison.timings
    for m in shown_models(comparison):
        r = comparison.results[names[m]]
        p_final = r.final_probabilities[0]
        show_chart(st, morph_figure(r, names[m], int(target), tuple(class_names),
                                    21 if lecture_focus() == "morph" else 41), key=f"morph_{m}",
                   config={"displayModeBar": False})
        c1, c2, c3 = st.columns([1, 1, 3])
        final_png, change_png = morph_pictures(r)
        c1.image(final_png, width=PICTURE_PX, output_format="PNG", caption="final image")
        diff = (r.final[0] - r.frames[0, 0]).cpu().numpy()  # every channel: the L2 and L∞ of the whole change
        c2.image(change_png, width=PICTURE_PX, output_format="PNG", caption="change (grey = none)")
        c3.write(f"**{plain(names[m])}**: p({class_names[target]}) = {100 * float(p_final[target]):.1f}% after "
                 f"{int(r.steps_run[0])} steps ({r.stop_reason[0]}), {timings[names[m]]:.2f} s. "
                 f"L2 change {float(np.linalg.norm(diff)):.2f}, L∞ {float(np.abs(diff).max()):.2f}.")
        others = comparison.cross[names[m]]
        agree = [who for who, (c, _) in others.items() if c == target]
        c3.markdown("**Read by the others** (not optimised against): " + " · ".join(
            f"{plain(who)}: {':green' if c == target else ':red'}[**{class_names[c]}** {100 * p:.0f}%]"
            for who, (c, p) in others.items())
            + (f" → it **looks like a {class_names[target]}**." if len(agree) * 2 > len(others) else
               f" → it fools {plain(names[m])} only: the picture is not a {class_names[target]}." if not agree else
               f" → the readers split ({len(agree)} of {len(others)} read a {class_names[target]}): not a clear "
               f"{class_names[target]}."))
        share = comparison.dark_share[names[m]]
        if np.isfinite(share) and share < 1e-3:
            c3.caption(f"{plain(names[m])} thresholds its input: dark pixels of the start get {100 * share:.1e}% of "
                       "its gradient, so plain ascent cannot draw a new stroke; the smoothed recipe's noise reaches "
                       "them.")
        if not rest_shown("classviz"):
            continue  # a lecture path's room looks at the morph: the files wait behind "Show the rest of the page"
        # Encoded once, in the job, with the result: a rerun only re-sends the bytes.
        files = comparison.downloads[names[m]]
        d1, d2 = c3.columns(2)
        # Callables: the bytes are handed over on a click, not registered again at every run of every session.
        d1.download_button("Frames (PNG strip)", lambda files=files: files["strip"],
                           file_name=f"morph_{class_names[target]}.png", mime="image/png", key=f"png_{m}",
                           icon=":material/download:", on_click="ignore", help="11 frames from start to final")
        d2.download_button("Frames (GIF)", lambda files=files: files["gif"],
                           file_name=f"morph_{class_names[target]}.gif", mime="image/gif", key=f"gif_{m}",
                           icon=":material/download:", on_click="ignore")

    grid = comparison.grid
    if grid is not None:
        st.subheader(f"All targets · {plain(names[model_ids[0]])} · {timings['grid']:.2f} s for {len(class_names)} "
                     "targets in one batch")
        cols = st.columns(len(class_names))
        for c, col in enumerate(cols):
            col.image(picture(grid.final[c]), clamp=True, width=64,
                      caption=f"{class_names[c]} {100 * float(grid.final_probabilities[c, c]):.0f}%")
        st.download_button("Download the ten final images (PNG)", comparison.grid_png, file_name="all_targets.png",
                           mime="image/png", icon=":material/download:", on_click="ignore")

    knn = comparison.knn
    if knn is not None:
        st.subheader("A gradient-free k-NN morph, for comparison")
        c1, c2 = st.columns([1, 3])
        c1.image(picture(knn.final), width=PICTURE_PX, clamp=True,
                 caption=f"k-NN result, pseudo-p {knn.pseudo_probability[-1]:.2f}")
        fig = go.Figure(go.Scatter(y=knn.pseudo_probability, mode="lines+markers", name="k-NN pseudo-probability"))
        fig.update_layout(height=260, template="plotly_white", margin=dict(t=10), xaxis_title="step",
                          yaxis=dict(title=f"share of 5 nearest in {class_names[target]}", range=[0, 1.02]))
        show_chart(c2, fig, key="knn_curve")
        first = timings[names[model_ids[0]]]
        st.caption(f"k-NN: {knn.steps_run} steps in {timings['knn']:.1f} s (every step measures distances to all "
                   f"training images) vs the network's gradient ascent in {first:.2f} s: without gradients the "
                   "direction is a noisy average of neighbours, and the image stays blurred.")


@st.fragment(run_every=0.5)
def watch_partial_results(job_key: str, shown: int) -> None:
    """Reruns the page as soon as the running morph publishes another model's result (or finishes)."""
    job = job_runner().get(job_key)
    partial = None if job is None else job.details.get("comparison")
    more = partial is not None and len(partial.results) != shown
    if job is None or job.status not in ("queued", "running") or more:
        st.rerun(scope="app")


def wait_for_news(job, shown: int, timeout_s: float) -> None:
    """Until the job finished or published more results than ``shown``, at most ``timeout_s``: a morph takes a
    second or two, so a free server shows it with no queue display."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not job.wait(0.05):
        partial = job.details.get("comparison")
        if partial is not None and len(partial.results) > shown:
            return


run_digest = hashlib.sha256(repr((store.root, run_key, None if start_image is None else start_image.numpy().tobytes()))
                            .encode()).hexdigest()[:24]
runner = job_runner()
morph_key = f"morph:{run_digest}"
# A lecture path opens on its morph (its card's promise): started once per visit, without a click (a room's identical
# requests run once, and a finished one is shown from the runner).
opened_on_morph = lecture_focus() == "morph" and st.session_state.get("_classviz_opened") != run_key
st.session_state["_classviz_opened"] = run_key if lecture_focus() == "morph" else None
if st.button("Morph", type="primary", icon=":material/auto_fix_high:") or opened_on_morph:
    previous = runner.get(morph_key)
    # The same morph already made on this server (the runner keeps its last 200 results): shown, not recomputed.
    submitted = previous if previous is not None and previous.status == "done" else \
        submit_job(morph_key, morph_job(), label="Morph", lane="short",
                   work=Work("morph", params={"gradients": int(steps) * int(noise_samples)
                                              * (10 if all_targets else len(model_ids))}))
    if submitted is not None:  # else refused (a quota, a full queue): submit_job said why
        st.session_state["classviz_job"] = morph_key
        if submitted.status != "done":  # (a finished one, a room's shared morph, is shown at once: no spinner)
            with st.spinner("Morphing…"):
                wait_for_news(submitted, 0, 3.0)
state = st.session_state.get("classviz")
if st.session_state.get("classviz_job") != morph_key and (state is None or state["key"] != run_key):
    # A link opened on the server that made its morph (a shared drawing, a lecture path): the result, no click.
    made = runner.get(morph_key)
    if made is not None and made.status == "done":
        st.session_state["classviz"] = {"key": run_key, "comparison": made.result}
job = runner.get(st.session_state["classviz_job"]) if st.session_state.get("classviz_job") == morph_key else None
if job is not None:
    if job.status in ("queued", "running"):
        partial = job.details.get("comparison")
        job_status([job.key], section="morph")
        if partial is not None:
            show_comparison(partial)
        watch_partial_results(job.key, 0 if partial is None else len(partial.results))
        st.stop()
    st.session_state.pop("classviz_job")
    if job.status == "done":
        st.session_state["classviz"] = {"key": run_key, "comparison": job.result}
    elif job.status == "failed":
        st.error(f"The morph failed: {plain(job.error)}", icon=":material/error:")

state = st.session_state.get("classviz")
if state is None or state["key"] != run_key:
    st.caption("Press **Morph** to run gradient ascent with these settings.")
    st.stop()
show_comparison(state["comparison"])
if lecture_focus() == "morph":
    rest_of_page("classviz")  # the downloads of each morph
