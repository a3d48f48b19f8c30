"""Confidence page: how sure is each model, is it calibrated, and how sure is it when attacked?"""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from lab_pages._audience import current_visitor
from lab_pages._jobs import job_or_retry, job_runner, job_status, submit_job
from lab_pages._outputs import picture, png_bytes, screen_figure, shared_output, shared_table
from lab_pages._analysis import analysis_page, default_candidates, model_labels, open_image
from lab_pages._layout import png_config, presenting, settings_box, show_chart
from lab_pages._resources import load_model
from lab_pages._text import plain
from lab_pages._url import set_url, url_choice, url_choices, url_float
from robust_core.access import Work
from robust_core.attacks import ATTACKS
from robust_core.confidence import (
    ATTACK_PARAMS,
    adversarial_inputs,
    calibration_metrics,
    confidence,
    differentiable,
    fit_temperature,
    quantiles,
    reliability,
    risk_coverage,
    scores,
)
from robust_core.models import architecture
from robust_core.plots import PALETTE, plotly_text
from robust_core.training import TrainConfig

SIZES = [500, 1000, 2000, 5000, 10000]
BASELINES = ("knn", "logreg")
NO_GRADIENT = ("knn",)  # models an input-gradient attack cannot run on: they get transferred images

dataset, store, data, entries = analysis_page("Confidence", networks_only=False)
names = model_labels(entries)  # plain text for the pickers; plain(...) where Markdown renders, plotly_text in figures
arch_of = {e.model_id: e.meta["config"]["arch"] for e in entries}
candidates = [e.model_id for e in default_candidates(entries)]  # never another visitor's model as a default
baselines = {a: next((m for m in candidates if arch_of[m] == a), next((m for m in names if arch_of[m] == a), None))
             for a in BASELINES}
models_key = f"confidence_models_{dataset}"

# First visit: the sidebar's model and the baselines. The Models multiselect then keeps its own state
# (in session_state, so that fitting the baselines below can add to it before it is drawn again).
default = list(dict.fromkeys(m for m in [st.session_state.get("model_id"), *baselines.values()] if m in names))[:4]
# A link's ?models= wins over the defaults; a model deleted on the Models page leaves the selection.
url_choices(models_key, "models", list(names), default or candidates[:1])

missing = [a for a in BASELINES if baselines[a] is None]
runner = job_runner()
if missing:
    c1, c2 = st.columns([3, 2])
    c1.caption("Compare the CNN with k-NN (k = 3) and logistic regression on raw pixels.")
    label = " and ".join({"knn": "k-NN", "logreg": "logistic-regression"}[a] for a in missing)
    configs = {arch: TrainConfig(dataset=dataset, arch=arch) for arch in missing}
    if c2.button(f"Fit the {label} baseline{'s' if len(missing) > 1 else ''}", icon=":material/add:",
                 disabled=bool(st.session_state.get("confidence_fits"))):
        # In the server's queue of long jobs (a room asking for the same baseline fits it once). A readable name: the
        # store's default (dataset · arch · method · id) reads like an id in the pickers.
        # The configurations are the page's own (no visitor's setting in them): bounded work, held to the job quotas.
        submitted = [submit_job(f"train:{store.root}:{config.config_hash()}",
                                store.training_job(config, data=data,
                                                   name=f"{architecture(arch).title} · {data.info.title}"),
                                label=f"Fitting the {architecture(arch).title}", lane="long")
                     for arch, config in configs.items()]
        st.session_state["confidence_fits"] = [j.key for j in submitted if j is not None]  # a refusal said why
# This visitor's baseline fits: progress while they run; once done, the new models join the selection.
fits = [j for j in (runner.get(k) for k in st.session_state.get("confidence_fits", [])) if j is not None]
if any(j.status in ("queued", "running") for j in fits):
    st.caption("Fitting on the training split, then scoring on the validation and test splits (about half a minute).")
    job_status([j.key for j in fits if j.status in ("queued", "running")], section="fits")
elif fits:
    st.session_state.pop("confidence_fits")
    for j in fits:
        if j.status == "failed":
            st.error(f"{plain(j.label)} failed: {plain(j.error)}. Nothing was saved.")
    added = [j.result.model_id for j in fits if j.status == "done"]
    if added:
        # A keyed multiselect ignores a changed default once drawn: the new baselines join its state instead.
        st.session_state[models_key] = list(dict.fromkeys([*st.session_state[models_key], *added]))
        st.rerun()

with settings_box("Settings"):
    # The whole width: a narrower field scrolls its chips out of sight as soon as three models are picked.
    model_ids = st.multiselect("Models", list(names), format_func=names.get, key=models_key, wrap=True)
    c1, c2, c3, c4, c5 = st.columns([2, 2, 3, 3, 3])
    splits, kinds = ["test", "validation"], ["clean", "adversarial"]
    url_choice("confidence_split", "split", splits, "test")
    url_choice("confidence_n", "n", SIZES, 1000)
    url_choice("confidence_inputs", "inputs", kinds, "clean")
    url_choice("confidence_attack", "attack", list(ATTACK_PARAMS), list(ATTACK_PARAMS)[0])
    split = c1.selectbox("Split", splits, key="confidence_split")
    n = c2.selectbox("Images", SIZES, key="confidence_n")
    inputs = c3.radio("Inputs", kinds, key="confidence_inputs", horizontal=True,
                      help="Adversarial: every model with an input gradient (networks, logistic regression) is "
                           "attacked white-box; the k-NN has none and is scored on images crafted on a model you "
                           "choose (transfer).")
    attack = c4.selectbox("Attack", list(ATTACK_PARAMS), key="confidence_attack",
                          format_func=lambda a: ATTACKS[a].label, disabled=inputs == "clean",
                          help="PGD: 20 steps, every step on every image (it maximises the loss instead of stopping "
                               "at the first misclassification, which would leave m(x) at the decision boundary).")
    url_float("confidence_eps", "eps", 0.0, 0.4, 0.1)
    eps = float(c5.slider("ε (L∞)", 0.0, 0.4, step=0.01, key="confidence_eps", disabled=inputs == "clean"))
    attacked = inputs == "adversarial" and eps > 0
    sources = [m for m in names if arch_of[m] not in NO_GRADIENT]
    source = None
    if attacked and any(arch_of[m] in NO_GRADIENT for m in model_ids):
        if sources:
            networks = [m for m in model_ids if arch_of[m] not in BASELINES]
            preferred = [m for m in [*networks, st.session_state.get("model_id"), *model_ids] if m in sources]
            source = st.columns([2, 3])[0].selectbox("k-NN attacked with images crafted on", sources,
                                                     index=sources.index(preferred[0]) if preferred else 0,
                                                     format_func=names.get,
                                                     help="The k-NN has no gradient: it is scored on the adversarial "
                                                          "images of this model (a transfer attack; weaker than "
                                                          "white-box, so its accuracy is an upper bound).")
        else:
            st.warning("No model with an input gradient to craft the attack on: the k-NN is shown on clean images.")
set_url(dataset=dataset, models=model_ids, split=split, n=n, inputs=inputs, attack=attack, eps=f"{eps:g}")
if not model_ids:
    st.info("Pick at least one model.")
    st.stop()

xs, ys = (data.test_x, data.test_y) if split == "test" else (data.val_x, data.val_y)
x, y = xs[:n], ys[:n]


@st.cache_data(show_spinner=False, max_entries=64)
def validation_temperature(model_id: str, dataset: str) -> float | None:
    """The temperature fitted on the 5,000 validation images (None without logits): depends on the model only."""
    model = load_model(model_id)
    if differentiable(model) is None:
        return None  # a k-NN: vote shares, no logits to scale
    _, logits = scores(model, data.val_x[:5000])
    return fit_temperature(logits, data.val_y[:5000])


@st.cache_data(show_spinner=False, max_entries=64)
def predictions(model_id: str, split: str, n: int, crafted_on: str | None, attack: str | None, eps: float, dataset: str,
                _inputs: torch.Tensor):
    """(probabilities, logits or None, validation temperature or None) of ``model_id`` on ``_inputs``: the clean
    images (``crafted_on`` None) or the images attacked on ``crafted_on``, which the other arguments determine."""
    proba, logits = scores(load_model(model_id), _inputs)
    return proba, logits, validation_temperature(model_id, dataset)


def crafted_on(m: str) -> str | None:
    """The model whose adversarial images ``m`` is scored on (None: clean images)."""
    if not attacked:
        return None
    return source if arch_of[m] in NO_GRADIENT else m


attack_text = f"{ATTACKS[attack].title} ε={eps:.2f}" if attacked else "none"


def adversarial_inputs_of(origins: list[str]) -> dict[str, torch.Tensor]:
    """The split's first n images attacked white-box on each model of ``origins`` (also what a k-NN gets
    transferred), from the server's job runner: an attack of 10,000 images takes minutes, so it waits in the long
    lane's queue with everyone's (the same request of two visitors runs once), never in this session. Stops the page
    with the jobs' progress until they are done."""
    work = Work("adversarial_inputs", images=n, attack=attack)
    jobs = {}
    for o in origins:
        key = f"confidence-adversarial:{store.root}:{o}:{dataset}:{split}:{n}:{attack}:{eps:g}"
        job = job_or_retry(key, label=f"Attacking {names[o]}", again="Attack it again")
        if job is None or (job.status in ("queued", "running") and current_visitor().owner not in job.owners):
            # A new request, or joining another visitor's: the attack goes on for this one if that one withdraws.

            def run(ctx, model_id=o, xs=x, ys=y, attack=attack, eps=eps):
                return adversarial_inputs(store.load(model_id), xs, ys, attack=attack, eps=eps,
                                          on_progress=ctx.progress)
            job = submit_job(key, run, label=f"Confidence · {attack_text} on {names[o]} · {n} images", work=work)
            if job is None:  # refused: submit_job said why
                st.stop()
        jobs[o] = job
    for job in jobs.values():
        job.wait(3.0 / max(len(jobs), 1))  # FGSM on a few hundred images: shown at once when the server is free
    if waiting := [j.key for j in jobs.values() if j.status in ("queued", "running")]:
        st.caption("Attacking the images in the server's queue; the page fills in once they are done.")
        job_status(waiting, section="adversarial")
        st.stop()
    failed = [o for o, j in jobs.items() if j.status != "done"]
    if failed:
        st.rerun()  # finished while we looked, not done: the next run shows why
    return {o: j.result for o, j in jobs.items()}


def inputs_label(m: str) -> str:
    """What row ``m`` was scored on (with the attack in the "Attack" column and the tables' headers):
    never unlike numbers in one column without saying so."""
    origin = crafted_on(m)
    if origin is None:
        return "clean" if not attacked else "clean (no model to transfer from)"
    return "white-box" if origin == m else f"transfer from {names[origin]}"


adversarial = adversarial_inputs_of(list(dict.fromkeys(o for m in model_ids if (o := crafted_on(m)) is not None)))


def trace_name(m: str) -> str:
    """Model ``m``'s name in the figures' legends (Plotly text: escaped)."""
    return plotly_text(f"{names[m]} (transfer)" if crafted_on(m) not in (None, m) else names[m])


def build_report() -> dict:
    """Predictions, the tables' rows, the three figures and the CSVs for these settings: once for every session."""
    started = st.progress(0.0, text="Predicting…")
    results = {}
    for i, m in enumerate(model_ids):
        origin = crafted_on(m)  # clean predictions are cached once, whatever the (disabled) attack widgets say
        results[m] = predictions(m, split, n, origin, attack if origin else None, eps if origin else 0.0, dataset,
                                 x if origin is None else adversarial[origin])
        started.progress((i + 1) / len(model_ids), text=f"{plain(names[m])} done")
    started.empty()

    rows, q_rows = [], []
    for m in model_ids:
        proba, logits, temperature = results[m]
        metrics = calibration_metrics(proba, y)
        row = {"Model": names[m], "Attack": attack_text, "Inputs": inputs_label(m), "Accuracy": metrics["accuracy"],
               "ECE": metrics["ece"], "MCE": metrics["mce"], "NLL": metrics["nll"], "Brier": metrics["brier"],
               "Temperature (val)": temperature, "ECE after T": None, "NLL after T": None}
        if temperature is not None:
            after = calibration_metrics((logits / temperature).softmax(1), y)
            row.update({"ECE after T": after["ece"], "NLL after T": after["nll"]})
        rows.append(row)
        q_rows.append({"Model": names[m], "Attack": attack_text, "Inputs": row["Inputs"],
                       **{f"Q{q:.2f}": v for q, v in quantiles(confidence(proba)).items()}})

    fig = go.Figure()
    for j, m in enumerate(model_ids):
        fig.add_trace(go.Histogram(x=confidence(results[m][0]).numpy(), name=trace_name(m), opacity=0.55,
                                   xbins=dict(start=0, end=1.0001, size=0.02), marker_color=PALETTE[j % len(PALETTE)],
                                   histnorm="percent"))
    fig.update_layout(barmode="overlay", template="plotly_white", height=340, margin=dict(t=30),
                      xaxis_title="m(x)", yaxis_title="% of images",
                      title="Histogram of m(x)" + (f" on {attack_text} inputs" if attacked else ""))
    rel = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="perfect")])
    risk = go.Figure()
    for j, m in enumerate(model_ids):
        proba = results[m][0]
        conf, correct = confidence(proba), (proba.argmax(1) == y).float()
        bins = reliability(conf, correct)
        keep = [i for i, c in enumerate(bins.count) if c]
        rel.add_trace(go.Scatter(x=[bins.confidence[i] for i in keep], y=[bins.accuracy[i] for i in keep],
                                 mode="lines+markers", name=trace_name(m), line=dict(color=PALETTE[j % len(PALETTE)]),
                                 text=[f"{bins.count[i]} images" for i in keep]))
        coverage, accuracy = risk_coverage(conf, correct)
        step = max(1, len(coverage) // 300)
        risk.add_trace(go.Scatter(x=coverage[::step] + [coverage[-1]], y=accuracy[::step] + [accuracy[-1]],
                                  mode="lines", name=trace_name(m), line=dict(color=PALETTE[j % len(PALETTE)])))
    rel.update_layout(template="plotly_white", height=360, title="Reliability diagram",
                      xaxis_title="mean confidence in bin", yaxis_title="accuracy in bin", margin=dict(t=40),
                      xaxis=dict(range=[0, 1]), yaxis=dict(range=[0, 1.02]))
    risk.update_layout(template="plotly_white", height=360, title="Selective prediction (risk–coverage)",
                       xaxis=dict(title="share of images answered (most confident first)", tickformat=".0%"),
                       # (capped at 100%: a model right on every image drew an axis to 200%)
                       yaxis=dict(title="accuracy on those", tickformat=".1%",
                                  autorangeoptions=dict(minallowed=0, maxallowed=1.005)), margin=dict(t=40))
    return {"results": results, "rows": rows, "q_rows": q_rows, "histogram": screen_figure(fig),
            "reliability": screen_figure(rel), "risk": screen_figure(risk),
            "quantiles_csv": pd.DataFrame(q_rows).to_csv(index=False),
            "calibration_csv": pd.DataFrame(rows).to_csv(index=False)}


report_settings = (dataset, tuple(model_ids), tuple(names[m] for m in model_ids), split, n, attack, float(eps),
                   attack_text, tuple(crafted_on(m) for m in model_ids), tuple(inputs_label(m) for m in model_ids),
                   presenting())
report = shared_output("confidence_report", report_settings, build_report)
results, rows, q_rows = report["results"], report["rows"], report["q_rows"]


def table(records: list[dict], columns: list[str], percent: tuple[str, ...] = ()):
    """``columns`` of ``records``, numbers as numbers (sortable, right-aligned), 4 decimals or a percentage.

    The attack is the same for every row, so it goes in the Inputs header (the CSVs keep it as a column);
    each cell says whether its model was attacked itself or scored on another model's images.
    """
    config = {c: st.column_config.NumberColumn(format="percent" if c in percent else "%.4f")
              for c in columns if c not in ("Model", "Inputs")}
    config["Inputs"] = st.column_config.TextColumn(f"Inputs ({attack_text})" if attacked else "Inputs")
    # "—" where a metric does not apply (a k-NN's temperature), never a bare "None".
    st.dataframe(shared_table(records), hide_index=True, column_order=columns, column_config=config, placeholder="—")


st.subheader("Accuracy and calibration")
if attacked:
    st.caption(f"Adversarial inputs, {attack_text}. **White-box**: the model attacked through its own gradients "
               "(networks, logistic regression)."
               + (" **Transfer**: the k-NN has no gradient, so it is scored on the "
                  f"images crafted on {plain(names[source])}; an upper bound on its accuracy under attack."
                  if source else ""))
table(rows, ["Model", "Inputs", "Accuracy", "ECE", "MCE", "NLL", "Brier"], percent=("Accuracy",))
st.caption("ECE/MCE: expected/maximum gap between confidence and accuracy over 15 confidence bins. "
           "On MNIST's clean test images, the CNN / k-NN / logistic regression reach about 99.0 / 96.9 / 92.6 %.")
st.markdown("**Temperature scaling**")
table(rows, ["Model", "Inputs", "Temperature (val)", "ECE after T", "NLL after T"])
st.caption("Temperature scaling (Guo et al. 2017) divides the logits by a temperature T fitted on the 5,000 validation "
           "images; it changes confidence, never the predictions. — : the k-NN has no logits to scale (its m(x) is a "
           "share of 3 votes).")
st.subheader("Quantiles of m(x) = max class probability")
table(q_rows, ["Model", "Inputs", *[k for k in q_rows[0] if k.startswith("Q")]])


show_chart(st, report["histogram"], key="histogram", config=png_config("confidence_histogram"))
st.caption("Each chart's camera button (top right, on hover) saves it as a PNG.")

c1, c2 = st.columns(2)
show_chart(c1, report["reliability"], key="reliability", config=png_config("reliability_diagram"))
show_chart(c2, report["risk"], key="risk_coverage", config=png_config("risk_coverage"))

st.subheader("Correct vs misclassified")
focus = st.selectbox("Model", model_ids, format_func=names.get, key="focus")
proba = results[focus][0]
conf, pred = confidence(proba), proba.argmax(1)
right = pred == y


def build_split_figure():
    """The correct-vs-misclassified histogram of the focused model: once for every session."""
    split_fig = go.Figure([go.Histogram(x=conf[right].numpy(), name=f"correct ({int(right.sum())})", opacity=0.6,
                                        histnorm="percent", xbins=dict(start=0, end=1.0001, size=0.02)),
                           go.Histogram(x=conf[~right].numpy(), name=f"misclassified ({int((~right).sum())})",
                                        opacity=0.6, histnorm="percent", xbins=dict(start=0, end=1.0001, size=0.02))])
    split_fig.update_layout(barmode="overlay", template="plotly_white", height=300, margin=dict(t=10),
                            xaxis_title="m(x)", yaxis_title="% of the group")
    return screen_figure(split_fig)


split_fig = shared_output("confidence_split", (report_settings, focus), build_split_figure)
show_chart(st, split_fig, key="split", config=png_config("confidence_correct_vs_wrong"))
# The gallery shows what the model was scored on: the attacked images in adversarial mode.
origin = crafted_on(focus)
shown_x = x if origin is None else adversarial[origin]
if origin is not None:
    st.caption(f"Inputs of {plain(names[focus])}: {attack_text}, {plain(inputs_label(focus))}. "
               "The gallery shows these attacked images; **Saliency** and **Attack** open their clean originals.")
focus_is_network = arch_of[focus] not in BASELINES
class_names = data.info.class_names


# Gallery captions are two lines in a column about 90 pixels wide at 1280 px: long class names are shortened.
# (CIFAR-10's short names are the dataset's own: DatasetInfo.short_class_names.)
SHORT_NAMES = {"T-shirt/top": "T-shirt", "Ankle boot": "Boot"}
short_names = [SHORT_NAMES.get(c, c) for c in data.info.short_class_names]


def gallery_png(i: int) -> bytes:
    """Image ``i`` of what the focused model was scored on, as PNG bytes: encoded once for every session."""
    def encode() -> bytes:
        return png_bytes(picture(shown_x[i]))

    return shared_output("confidence_gallery", (report_settings, focus, i), encode, max_entries=256)


def gallery(title: str, indices: list[int], key: str):
    """Eight images with their prediction; each opens on the Saliency page (any split) or the Attack page (test)."""
    st.markdown(f"**{title}**")
    if not indices:
        st.caption("none")
        return
    cols = st.columns(8, gap="xsmall")
    for col, i in zip(cols, indices[:8]):
        col.image(gallery_png(i), width=72, output_format="PNG")  # PNG bytes as they are (auto: re-encoded as JPEG)
        # Two short lines under the image rather than its caption, which is only as wide as the image and
        # wrapped to three lines or more; the image's index is in the buttons' tooltips.
        col.caption(f"**{short_names[int(pred[i])]}** {100 * float(conf[i]):.0f}%  \ntrue {short_names[int(y[i])]}")
        target = dict(dataset=dataset, split=split, index=i, model_id=focus if focus_is_network else None)
        if col.button("Saliency", key=f"{key}_saliency_{i}", icon=":material/visibility:", type="tertiary",
                      help=f"Open {split} image #{i} on the Saliency page: where did the models look?"):
            open_image("lab_pages/saliency.py", **target)
        if col.button("Attack", key=f"{key}_attack_{i}", icon=":material/bolt:", type="tertiary",
                      disabled=split != "test",
                      help=f"Open test image #{i} in the Attack page's targeted section" if split == "test"
                      else "The Attack page works on test images: switch the split to test"):
            open_image("lab_pages/attack.py", **target)


wrong_idx = (~right).nonzero().flatten()
right_idx = right.nonzero().flatten()
gallery("Most confident mistakes", wrong_idx[conf[wrong_idx].argsort(descending=True)].tolist(), "mistakes")
gallery("Least confident correct predictions", right_idx[conf[right_idx].argsort()].tolist(), "unsure")
st.caption("Under each image: the predicted class in bold, m(x), and the true class. **Saliency** and **Attack** open "
           f"an image on those pages (their tooltips give its index in the {split} split)"
           + (f" with {plain(names[focus])} as the sidebar model." if focus_is_network else "."))

c1, c2 = st.columns(2)
c1.download_button("Download the quantiles (CSV)", report["quantiles_csv"], file_name="confidence_quantiles.csv",
                   mime="text/csv", icon=":material/download:", on_click="ignore")
c2.download_button("Download accuracy and calibration (CSV)", report["calibration_csv"], file_name="calibration.csv",
                   mime="text/csv", icon=":material/download:", on_click="ignore")
