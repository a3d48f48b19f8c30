"""Saliency page: where did each model look, on the clean and on the adversarial image?"""
import io
import time

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

from lab_pages._audience import current_visitor
from lab_pages._outputs import picture, screen_figure, shared_output
from lab_pages._analysis import SPLIT_LABELS, analysis_page, comparison_defaults, model_labels, opened_image
from lab_pages._audience import in_lecture_mode
from lab_pages._canvas import digit_canvas
from lab_pages._layout import folded_controls, presenting, settings_box, show_chart
from lab_pages._resources import load_model
from lab_pages._text import plain
from lab_pages._url import set_url, url_choices, url_int
from lab_pages.photo_views import saliency_view
from robust_core.attacks import ATTACKS
from robust_core.digits import MAX_FILE_BYTES as DIGIT_MAX_FILE_BYTES
from robust_core.evaluation import CURVE_ATTACK_PARAMS
from robust_core.digits import NotADigitImage, mnist_style
from robust_core.models import predict_proba
from robust_core.plots import plotly_text
from robust_core.saliency import (
    METHODS,
    RANDOMISATION_THRESHOLD,
    attribute,
    available_methods,
    deletion_insertion,
    grid_png,
    heatmap,
    randomisation_check,
    randomisation_verdict,
)

DEFAULT_METHODS = ["saliency", "integrated_gradients", "smoothgrad", "grad_cam"]
COLOUR_MAPS = ["Viridis", "Hot", "Inferno", "RdBu_r"]
MAX_MODELS = 4
# The file names of robust_core.digits.ACCEPTED_FORMATS (the format itself is checked from the file's header).
DIGIT_FILE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]
# One colour per method, the same in both check plots (D3's ten, then black for the eleventh).
METHOD_COLOURS = dict(zip(METHODS, ["#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2",
                                    "#7F7F7F", "#BCBD22", "#17BECF", "#000000"]))

dataset, store, data, networks = analysis_page("Saliency", photo_view=saliency_view)
names = model_labels(networks)  # plain text for the pickers; plain(...) where Markdown renders, plotly_text in figures
class_names = data.info.class_names

with settings_box("Settings"):
    c1, c2 = st.columns([3, 2])
    # wrap=True: in a column Streamlit keeps the chips on one scrolling row, which hid every method after the second.
    # Defaults from the address (a lecture path, a shared link); the state goes back into it below.
    url_choices("saliency_models", "models", list(names), comparison_defaults(networks), limit=MAX_MODELS)
    model_ids = c1.multiselect("Models (columns)", list(names), key="saliency_models", format_func=names.get,
                               max_selections=MAX_MODELS, wrap=True)
    methods = c2.multiselect("Methods (rows)", list(METHODS), default=DEFAULT_METHODS,
                             format_func=lambda m: METHODS[m].title, wrap=True)
    set_url(dataset=dataset, models=model_ids)
    c1, c2, c3 = st.columns(3)
    opened = opened_image("lab_pages/saliency.py", dataset)
    sources = ["Test image", "Draw", "Upload"] + (["Opened image"] if opened else [])
    if opened and opened["new"]:
        st.session_state["saliency_source"] = "Opened image"
    if st.session_state.get("saliency_source") not in sources:
        st.session_state.pop("saliency_source", None)
    source = c1.radio("Image", sources, horizontal=True, key="saliency_source",
                      help="'Opened image': the one opened from the Confidence page's galleries")
    image_x, true_label = None, None
    if source == "Opened image":
        split_x, split_y = (data.test_x, data.test_y) if opened["split"] == "test" else (data.val_x, data.val_y)
        index = opened["index"]
        image_x, true_label = split_x[index : index + 1], int(split_y[index])
        c2.image(image_x[0, 0].numpy(), width=84, clamp=True)
        c3.caption(f"{SPLIT_LABELS[opened['split']]} #{index} (true class {class_names[true_label]}), opened from the "
                   "Confidence page.")
    elif source == "Test image":
        pick_class = c2.selectbox("Class", ["any"] + list(range(len(class_names))),
                                  format_func=lambda c: "any class" if c == "any" else class_names[c])
        pool = (torch.arange(len(data.test_y)) if pick_class == "any"
                else (data.test_y == pick_class).nonzero().flatten())
        linked = st.query_params.get("index")
        if pick_class == "any" and linked != st.session_state.get("_linked_saliency_index"):
            # A link's ?index= opens that test image, once per new value (the page then keeps it in the address).
            st.session_state["_linked_saliency_index"] = linked
            st.session_state["saliency_position"] = url_int("index", 0, len(pool) - 1, 0)
        if st.session_state.get("saliency_position", 0) > len(pool) - 1:  # another class has fewer images
            st.session_state["saliency_position"] = 0
        if c3.button("Random image", icon=":material/shuffle:"):
            st.session_state["saliency_position"] = int(torch.randint(len(pool), (1,)))
        position = c3.number_input(f"Image (0 … {len(pool) - 1})", 0, len(pool) - 1, key="saliency_position",
                                   help="Index among the test images of the chosen class")
        index = int(pool[int(position)])
        image_x, true_label = data.test_x[index : index + 1], int(data.test_y[index])
        st.session_state["_linked_saliency_index"] = str(index)  # what set_url writes below: not a new link
        set_url(index=index)
    elif source == "Draw":
        if data.info.shape != (1, 28, 28):
            st.error("Drawn digits are 28×28 grey images: choose MNIST or Fashion-MNIST.")
        else:
            image_x = digit_canvas(st, key="saliency_draw")
    else:
        upload = c2.file_uploader("A picture of one digit", type=DIGIT_FILE_TYPES,
                                  max_upload_size=DIGIT_MAX_FILE_BYTES // 2**20,  # the browser refuses more first
                                  help="PNG, JPEG, WebP, BMP, GIF or TIFF; at most "
                                       f"{DIGIT_MAX_FILE_BYTES // 2**20} MB.")
        c3.caption("Converted the way MNIST was made: grey levels, cropped, scaled to fit 20×20, centred by "
                   "centre of mass in 28×28; a dark digit on light paper is inverted.")
        # Checked here too, not only by the widget: the server holds whatever a client sends.
        if upload is not None and upload.size > DIGIT_MAX_FILE_BYTES:
            st.error(f"{plain(upload.name)} is {upload.size / 2**20:.1f} MB; the limit is "
                     f"{DIGIT_MAX_FILE_BYTES // 2**20} MB.", icon=":material/broken_image:")
        elif upload is not None:
            try:
                image_x = mnist_style(upload.getvalue())  # header-first checks: a bomb is refused before decoding
            except NotADigitImage as exc:
                st.error(plain(exc), icon=":material/broken_image:")
        if image_x is not None and data.info.shape != (1, 28, 28):
            st.error("Uploaded digits are 28×28 grey images: choose MNIST or Fashion-MNIST.")
            image_x = None
    c1, c2, c3, c4 = st.columns(4)
    target_mode = c1.radio("Explain the class", ["predicted", "true", "chosen"], horizontal=True,
                           help="'true' needs a test image (an upload has no label)")
    chosen_class = c2.selectbox("Chosen class", range(len(class_names)), format_func=lambda c: class_names[c],
                                disabled=target_mode != "chosen")
    colour_map = c3.selectbox("Colour map", COLOUR_MAPS)
    display = c4.radio("Display", ["overlay", "side by side"], horizontal=True)
    c1, c2, c3, c4 = st.columns(4)
    signed = c1.toggle("Signed", value=False,
                       help="Red/blue for positive/negative evidence (methods whose sign means something)")
    with_adversarial = c2.toggle("Also on an adversarial image", value=True)
    attack = c3.selectbox("Attack", ["pgd", "fgsm", "apgd_ce"], format_func=lambda a: ATTACKS[a].label,
                          disabled=not with_adversarial)
    eps = c4.slider("ε (L∞)", 0.0, 0.5, 0.15, 0.01, disabled=not with_adversarial)

if image_x is None:
    st.info("Pick a test image or upload a picture of a digit.", icon=":material/image:")
    st.stop()
if not model_ids or not methods:
    st.info("Pick at least one model and one method.")
    st.stop()
if target_mode == "true" and true_label is None:
    st.warning("An uploaded image has no true label: explaining the predicted class instead.")
    target_mode = "predicted"


@st.cache_data(show_spinner=False, max_entries=128)
def attacked_image(model_id: str, image: np.ndarray, label: int | None, attack: str, eps: float, dataset: str):
    """The attacked copy of ``image`` for one model, once for every method (seeded: every map is of the same image)."""
    model = load_model(model_id)
    x = torch.from_numpy(image)
    y_attack = torch.tensor([label]) if label is not None else predict_proba(model, x).argmax(1)
    # The curves' parameters (PGD-40): the attacked image is one the Attack page's curves count as broken or not.
    return ATTACKS[attack](model, x, y_attack, eps=eps, seed=0, **CURVE_ATTACK_PARAMS.get(attack, {})).numpy()


@st.cache_data(show_spinner=False, max_entries=512)
def maps_for(model_id: str, image: np.ndarray, label: int | None, mode: str, chosen: int, method: str,
             attack: str | None, eps: float, dataset: str):
    """(input, attribution, probabilities, target) for one model, method and (clean or attacked) image."""
    model = load_model(model_id)
    x = torch.from_numpy(image)
    if attack is not None and eps > 0:
        x = torch.from_numpy(attacked_image(model_id, image, label, attack, eps, dataset))
    proba = predict_proba(model, x)[0]
    target = int(proba.argmax()) if mode == "predicted" else (label if mode == "true" else chosen)
    reason = available_methods(model)[method]
    attr = None if reason else attribute(model, x, target, method)
    return picture(x)[0], None if attr is None else attr[0].numpy(), proba.numpy(), target, reason


# Maps are computed in the visitor's own page run (each a fraction of a second): in lecture mode a visitor's grid is
# bounded, so that a few students dragging ε cannot take both cores.
VISITOR_MAPS = 12
if in_lecture_mode() and not current_visitor().lecturer and len(model_ids) * len(methods) > VISITOR_MAPS:
    keep = max(1, VISITOR_MAPS // len(model_ids))
    st.warning(f"Lecture mode: visitors draw at most {VISITOR_MAPS} maps per image (models × methods); showing the "
               f"first {keep} method(s).", icon=":material/block:")
    methods = methods[:keep]


variants = [("clean", None)] + ([("adversarial", attack)] if with_adversarial and eps > 0 else [])
columns = [(v, m) for v, _ in variants for m in model_ids]


def build_grid() -> dict:
    """The maps, the figure, the caption and the two downloads for these settings: built once for every session."""
    started = time.perf_counter()
    results = {}
    bar = st.progress(0.0, text="Computing attributions…")
    jobs = [(v, m, meth) for v, _ in variants for m in model_ids for meth in methods]
    for i, (variant, m, meth) in enumerate(jobs):
        results[(variant, m, meth)] = maps_for(m, image_x.numpy(), true_label, target_mode, int(chosen_class), meth,
                                               dict(variants)[variant], float(eps), dataset)
        bar.progress((i + 1) / len(jobs), text=f"{METHODS[meth].title} on {plain(names[m])} ({variant})")
    bar.empty()

    extra_image_row = display == "side by side"
    rows = len(methods) + (1 if extra_image_row else 0)
    titles = []
    for r in range(rows):
        for v, m in columns:
            if r == 0:
                img, _, proba, target, _ = results[(v, m, methods[0])]
                # Three short lines: with 3 models x (clean, adversarial) one long line overlaps its neighbours.
                titles.append(f"{plotly_text(names[m])}<br>"
                              f"{v}: {class_names[int(proba.argmax())]} {100 * proba.max():.0f}%"
                              f"<br>explains {class_names[target]}")
            else:
                titles.append("")
    # One colour bar per kind of map on the grid: |attribution| (the chosen colour map) and, in signed mode, signed
    # attribution (red for, blue against); both in units of the map's own 99th percentile of |values| (heatmap()).
    signed_rows = signed and any(METHODS[m].signed for m in methods)
    absolute_rows = not signed or any(not METHODS[m].signed for m in methods)
    both = signed_rows and absolute_rows
    bar = dict(x=1.05, xanchor="left", thickness=12, len=0.45 if both else min(0.9, 300 / (105 + rows * 150)))
    COLOUR_BARS = {
        "absolute": dict(bar, title=dict(text="|attribution|", side="top"), tickvals=[0, 0.5, 1],
                         ticktext=["0", "½ p99", "≥ p99"], y=0.75 if both else 0.5),
        "signed": dict(bar, title=dict(text="signed", side="top"), tickvals=[-1, 0, 1],
                       ticktext=["≤ −p99 against", "0", "≥ p99 for"], y=0.25 if both else 0.5),
    }
    scales_shown = set()
    row_titles = (["input"] if extra_image_row else []) + [METHODS[m].title.split(" (")[0] for m in methods]
    fig = make_subplots(rows=rows, cols=len(columns), subplot_titles=titles, horizontal_spacing=0.01,
                        vertical_spacing=0.03, row_titles=row_titles)
    for c, (v, m) in enumerate(columns):
        image = results[(v, m, methods[0])][0]
        # Maps lie over the input's brightness (a colour image under a colour map would be muddy); the input row of
        # "side by side" shows it in colour.
        under = image if image.ndim == 2 else image.mean(2)
        if extra_image_row:
            fig.add_trace(go.Heatmap(z=image[::-1], colorscale="gray", zmin=0, zmax=1, showscale=False,
                                     hoverinfo="skip") if image.ndim == 2 else
                          go.Image(z=(np.clip(image, 0, 1) * 255).round().astype(np.uint8), hoverinfo="skip"),
                          row=1, col=c + 1)
        for r, meth in enumerate(methods):
            row = r + 1 + (1 if extra_image_row else 0)
            _, attr, _, _, reason = results[(v, m, meth)]
            if attr is None:
                fig.add_annotation(text="n/a: no conv layer", showarrow=False, row=row, col=c + 1, font=dict(size=10))
                continue
            use_signed = signed and METHODS[meth].signed
            hm = heatmap(torch.from_numpy(attr)[None], signed=use_signed)[0]
            if display == "overlay":
                fig.add_trace(go.Heatmap(z=under[::-1], colorscale="gray", zmin=0, zmax=1, showscale=False,
                                         hoverinfo="skip"),
                              row=row, col=c + 1)
            scale = "signed" if use_signed else "absolute"
            fig.add_trace(go.Heatmap(z=hm[::-1], colorscale="RdBu_r" if use_signed else colour_map,
                                     zmin=-1 if use_signed else 0, zmax=1, hoverinfo="skip",
                                     showscale=scale not in scales_shown, colorbar=COLOUR_BARS[scale],
                                     opacity=0.65 if display == "overlay" else 1.0), row=row, col=c + 1)
            scales_shown.add(scale)
    # Column titles: 13 px (14 on a projector) up to four columns; 10 px beyond, where 11 px titles ran into each other.
    fig.update_annotations(font_size=(14 if presenting() else 13) if len(columns) <= 4 else 10)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    for i in range(1, rows * len(columns) + 1):
        fig.update_yaxes(scaleanchor=f"x{i if i > 1 else ''}", row=(i - 1) // len(columns) + 1,
                         col=(i - 1) % len(columns) + 1)
    # px a row: on a lecture path or a projector the grid fits under the title and the folded settings of a 720 px
    # screen.
    cell = max(90, (500 - 105) // rows) if folded_controls() else 150
    fig.update_layout(height=105 + rows * cell, width=None, margin=dict(l=10, r=110, t=85, b=10),
                      template="plotly_white", font=dict(size=11))
    if not signed:
        shown = "Heatmaps: |attribution|"
    elif signed_rows and absolute_rows:
        shown = ("Heatmaps: signed attribution for " + ", ".join(METHODS[m].title for m in methods if METHODS[m].signed)
                 + " (red: evidence for the explained class, blue: against); |attribution| for "
                 + ", ".join(METHODS[m].title for m in methods if not METHODS[m].signed)
                 + " (their sign means nothing)")
    elif signed_rows:
        shown = "Heatmaps: signed attribution (red: evidence for the explained class, blue: against)"
    else:
        shown = "Heatmaps: |attribution| (none of these methods has a meaningful sign, so Signed changes nothing)"
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{f"{v}__{names[m]}__{meth}": results[(v, m, meth)][1]
                                   for v, m in columns for meth in methods if results[(v, m, meth)][1] is not None},
                        **{f"{v}__{names[m]}__input": results[(v, m, methods[0])][0] for v, m in columns})
    png = grid_png([[None if results[(v, m, meth)][1] is None else
                     heatmap(torch.from_numpy(results[(v, m, meth)][1])[None],
                             signed=signed and METHODS[meth].signed)[0]
                     for v, m in columns] for meth in methods],
                   row_labels=[METHODS[m].title for m in methods], col_labels=[f"{names[m]} ({v})" for v, m in columns],
                   images=[results[(v, m, methods[0])][0] for v, m in columns] if display == "overlay" else None,
                   colour_map=colour_map)
    return {"results": results, "figure": screen_figure(fig), "maps": len(jobs),
            "seconds": time.perf_counter() - started, "shown": shown, "npz": buffer.getvalue(), "png": png}


grid_settings = (dataset, tuple(model_ids), tuple(names[m] for m in model_ids), tuple(methods),
                 image_x.numpy().tobytes(), true_label, target_mode, int(chosen_class),
                 attack if with_adversarial else None, float(eps), colour_map, display, signed, presenting(),
                 folded_controls())
grid = shared_output("saliency_grid", grid_settings, build_grid, max_entries=64)
results = grid["results"]
show_chart(st, grid["figure"], key="saliency_grid", config={"displayModeBar": False})
st.caption(f"{grid['maps']} maps in {grid['seconds']:.1f} s (cached afterwards). {grid['shown']}; channels "
           "summed, each map scaled to its 99th percentile of |values|, brighter pixels clipped (colour bar). "
           + " · ".join(f"{METHODS[m].title}: {METHODS[m].paper}" for m in methods))
d1, d2 = st.columns(2)
# Callables: the bytes are handed over on a click, not registered as a media file at every run of every session.
d1.download_button("Download the raw attributions (.npz)", lambda: grid["npz"], file_name="attributions.npz",
                   icon=":material/download:", on_click="ignore")
d2.download_button("Download the figure (PNG)", lambda: grid["png"], file_name="saliency.png", mime="image/png",
                   icon=":material/download:", on_click="ignore")

with st.expander("Sanity checks: model randomisation (a pass/fail verdict per method) and deletion/insertion"):
    st.caption("Model randomisation (Adebayo et al. 2018): re-initialise the layers from the output down and "
               "measure how much each map still resembles the trained model's (Spearman rank correlation of |map|, "
               "over the pixels the network can see). A method whose map barely changes explains the image, not the "
               "model: it passes "
               f"when the correlation falls below {RANDOMISATION_THRESHOLD:g} once every layer is random. "
               "Deletion/insertion: the target's probability as the most-attributed pixels are removed (should fall "
               "fast) or added to a black image (should rise fast).")
    k1, k2 = st.columns(2)
    check_model = k1.selectbox("Model", model_ids, format_func=names.get, key="check_model")
    # 8 by default: one image gives a noisy verdict (Grad-CAM's correlation ranges from -0.6 to 0.9 image to image).
    n_check = k2.number_input("Images", 1, 200, 8, help="1: the current image; more: the first N test images, "
                              "each explaining its predicted class, curves and correlations averaged (one image "
                              "gives a noisy verdict)")
    if st.button("Run the checks", icon=":material/science:"):
        model = load_model(check_model)
        if n_check == 1:
            x = image_x
            target = results[("clean", check_model, methods[0])][3]
        else:
            x = data.test_x[: int(n_check)]
            target = predict_proba(model, x).argmax(1)
        progress = st.progress(0.0)
        fig_r, fig_d = go.Figure(), go.Figure()
        aucs, cascades = [], {}
        usable = [m for m in methods if not available_methods(model)[m]]
        for i, meth in enumerate(usable):
            colour, title = METHOD_COLOURS[meth], METHODS[meth].title
            progress.progress(i / len(usable), text=f"{title}: randomising the layers…")
            cascades[meth] = steps = randomisation_check(model, x, target, meth)
            fig_r.add_trace(go.Scatter(x=["trained"] + [f"…{s.layer}" for s in steps],
                                       y=[1.0] + [s.correlation for s in steps],
                                       mode="lines+markers", name=title, line=dict(color=colour)))
            curves = deletion_insertion(model, x, target, attribute(model, x, target, meth), steps=20)
            # Same colour for a method's two curves; the dash tells deletion from insertion (legend: one entry per
            # method).
            fig_d.add_trace(go.Scatter(x=curves["fraction"], y=curves["deletion"], name=title, legendgroup=meth,
                                       line=dict(color=colour),
                                       hovertemplate=f"{title} · deletion: %{{y:.2f}}<extra></extra>"))
            fig_d.add_trace(go.Scatter(x=curves["fraction"], y=curves["insertion"], name=title, legendgroup=meth,
                                       showlegend=False, line=dict(color=colour, dash="dash"),
                                       hovertemplate=f"{title} · insertion: %{{y:.2f}}<extra></extra>"))
            aucs.append({"Method": title, "Randomisation check": "",
                         "Correlation, all layers random": round(steps[-1].correlation, 3),
                         "Deletion AUC (lower is better)": round(curves["deletion_auc"], 3),
                         "Insertion AUC (higher is better)": round(curves["insertion_auc"], 3)})
        progress.empty()
        verdicts = randomisation_verdict(cascades)
        # Material icons, not emoji: a browser without an emoji font shows emoji as empty boxes.
        icons = {True: ":green[:material/check_circle:]", False: ":red[:material/cancel:]",
                 None: ":gray[:material/remove_circle:]"}
        words = {True: "passes", False: "fails", None: "gives no verdict"}
        for meth, row in zip(usable, aucs):
            row["Randomisation check"] = words[verdicts[meth].passes]
        images = "the current image" if len(x) == 1 else f"the first {len(x)} test images"
        st.markdown(f"**Model randomisation verdict** on {images} ({plain(names[check_model])}):")
        st.markdown("\n".join(f"- {icons[v.passes]} **{METHODS[m].title}** {words[v.passes]}: {v.reason}"
                              for m, v in verdicts.items()))
        skipped = [METHODS[m].title for m in methods if m not in usable]
        if skipped:
            st.caption(f"Not checked on this model: {', '.join(skipped)} (needs a convolutional layer).")
        for name in ("deletion (solid)", "insertion (dashed)"):  # legend entries for the two line styles
            fig_d.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=name, legendgroup="style",
                                       line=dict(color="#555", dash="dash" if "insertion" in name else "solid")))
        fig_r.add_hline(y=RANDOMISATION_THRESHOLD, line=dict(color="#999", dash="dot"),
                        annotation_text=f"passes below {RANDOMISATION_THRESHOLD:g}", annotation_position="bottom left")
        fig_r.update_layout(template="plotly_white", height=340,
                            yaxis=dict(title="rank correlation of |map|<br>with the trained model's",
                                       range=[-0.2, 1.05]),
                            xaxis_title="layers re-initialised (cumulative, from the output)", margin=dict(t=20))
        # Legends at the right: Plotly widens the margin for them, while one under the plot wraps and is cut off.
        fig_d.update_layout(template="plotly_white", height=380,
                            yaxis=dict(title="target probability", range=[0, 1.02]),
                            xaxis=dict(title="share of pixels removed (deletion) / inserted (insertion)",
                                       tickformat=".0%"),
                            margin=dict(t=20))
        show_chart(st, fig_r, key="randomisation")
        show_chart(st, fig_d, key="deletion")
        st.dataframe(aucs, hide_index=True, width="stretch")
