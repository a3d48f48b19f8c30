"""Confidence page: how sure is each model, is it calibrated, and how sure is it when attacked?"""
import plotly.graph_objects as go
import streamlit as st
import torch

from pages._shared import analysis_page, open_image, png_config
from robust_core.attacks import ATTACKS
from robust_core.confidence import (SEED_QUANTILES, calibration_metrics, confidence, fit_temperature, quantiles,
                                    reliability, risk_coverage)
from robust_core.models import predict_proba
from robust_core.plots import PALETTE
from robust_core.training import TrainConfig

SIZES = [500, 1000, 2000, 5000, 10000]

dataset, store, data, entries = analysis_page("Confidence", networks_only=False)
names = {e.model_id: e.name for e in entries}
arch_of = {e.model_id: e.meta["config"]["arch"] for e in entries}
baselines = {a: next((m for m in names if arch_of[m] == a), None) for a in ("knn", "logreg")}

if None in baselines.values():
    c1, c2 = st.columns([3, 2])
    c1.caption("The seed compares the CNN with k-NN (k = 3) and logistic regression on raw pixels.")
    if c2.button("Fit the k-NN and logistic-regression baselines", icon=":material/add:"):
        with st.spinner("Fitting the baselines on the training split (logistic regression takes a minute)…"):
            for arch in ("knn", "logreg"):
                if baselines[arch] is None:
                    store.train_or_load(TrainConfig(dataset=dataset, arch=arch), data=data)
        st.rerun()

with st.container(border=True):
    c1, c2, c3 = st.columns([4, 1, 1])
    default = [m for m in [st.session_state.get("model_id"), *baselines.values()] if m in names][:4] or [entries[0].model_id]
    model_ids = c1.multiselect("Models", list(names), default=list(dict.fromkeys(default)), format_func=names.get,
                               key=f"confidence_models_{dataset}")
    split = c2.selectbox("Split", ["test", "validation"])
    n = c3.selectbox("Images", SIZES, index=1)
    c1, c2, c3 = st.columns(3)
    inputs = c1.radio("Inputs", ["clean", "adversarial"], horizontal=True,
                      help="Adversarial: each network attacked white-box; baselines keep clean inputs (no gradient).")
    attack = c2.selectbox("Attack", ["fgsm", "pgd"], format_func=lambda a: ATTACKS[a].title, disabled=inputs == "clean")
    eps = c3.slider("ε (L∞)", 0.0, 0.4, 0.1, 0.01, disabled=inputs == "clean")
if not model_ids:
    st.info("Pick at least one model.")
    st.stop()

xs, ys = (data.test_x, data.test_y) if split == "test" else (data.val_x, data.val_y)
x, y = xs[:n], ys[:n]


@st.cache_data(show_spinner=False, max_entries=64)
def validation_temperature(model_id: str, dataset: str) -> float:
    """The temperature fitted on the 5,000 validation images: depends on the model only."""
    model = store.load(model_id)
    with torch.no_grad():
        val_logits = torch.cat([model(data.val_x[i : i + 1000]) for i in range(0, 5000, 1000)])
    return fit_temperature(val_logits, data.val_y[:5000])


@st.cache_data(show_spinner=False, max_entries=64)
def probabilities(model_id: str, split: str, n: int, attack: str | None, eps: float, dataset: str):
    """(probabilities on the inputs, logits or None, temperature fitted on the validation split or None, attacked?)."""
    model = store.load(model_id)
    xi, yi = x, y
    is_network = arch_of[model_id] not in ("knn", "logreg")
    attacked = attack is not None and eps > 0 and is_network
    if attacked:
        xi = torch.cat([ATTACKS[attack](model, xi[i : i + 500], yi[i : i + 500], eps=eps, **({"steps": 20} if attack == "pgd" else {}))
                        for i in range(0, len(xi), 500)])
    if not is_network:
        return predict_proba(model, xi), None, None, attacked
    with torch.no_grad():
        logits = torch.cat([model(xi[i : i + 1000]) for i in range(0, len(xi), 1000)])
    return logits.softmax(1), logits, validation_temperature(model_id, dataset), attacked


started = st.progress(0.0, text="Predicting…")
results = {}
for i, m in enumerate(model_ids):
    results[m] = probabilities(m, split, n, attack if inputs == "adversarial" else None, float(eps), dataset)
    started.progress((i + 1) / len(model_ids), text=f"{names[m]} done")
started.empty()

rows, q_rows = [], []
for m in model_ids:
    proba, logits, temperature, attacked = results[m]
    metrics = calibration_metrics(proba, y)
    row = {"Model": names[m], "Inputs": "attacked" if attacked else "clean", "Accuracy": metrics["accuracy"],
           "ECE": metrics["ece"], "MCE": metrics["mce"], "NLL": metrics["nll"], "Brier": metrics["brier"],
           "Temperature (val)": temperature}
    if temperature is not None:
        after = calibration_metrics((logits / temperature).softmax(1), y)
        row.update({"ECE after T": after["ece"], "NLL after T": after["nll"]})
    rows.append(row)
    q_rows.append({"Model": names[m], **{f"Q{q:.2f}": v for q, v in quantiles(confidence(proba)).items()}})
st.subheader("Accuracy and calibration")
st.dataframe(rows, hide_index=True, column_config={"Accuracy": st.column_config.NumberColumn(format="percent")})
st.caption("ECE/MCE: expected/maximum gap between confidence and accuracy over 15 confidence bins. Temperature scaling "
           "(Guo et al. 2017) is fitted on the 5,000 validation images; it changes confidence, never the predictions. "
           "Seed §1.3 reports about 99.0 / 96.9 / 92.6 % for CNN / k-NN / logistic regression.")
st.subheader("Quantiles of m(x) = max class probability")
st.dataframe(q_rows, hide_index=True)

fig = go.Figure()
for j, m in enumerate(model_ids):
    fig.add_trace(go.Histogram(x=confidence(results[m][0]).numpy(), name=names[m], opacity=0.55, xbins=dict(start=0, end=1.0001, size=0.02),
                               marker_color=PALETTE[j % len(PALETTE)], histnorm="percent"))
fig.update_layout(barmode="overlay", template="plotly_white", height=340, margin=dict(t=30),
                  xaxis_title="m(x)", yaxis_title="% of images", title="Histogram of m(x)")
st.plotly_chart(fig, key="histogram", config=png_config("confidence_histogram"))
st.caption("Each chart's camera button (top right, on hover) saves it as a PNG.")

c1, c2 = st.columns(2)
rel = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="grey"), name="perfect")])
risk = go.Figure()
for j, m in enumerate(model_ids):
    proba = results[m][0]
    conf, correct = confidence(proba), (proba.argmax(1) == y).float()
    bins = reliability(conf, correct)
    centres = [(a + b) / 2 for a, b in zip(bins.edges[:-1], bins.edges[1:])]
    keep = [i for i, c in enumerate(bins.count) if c]
    rel.add_trace(go.Scatter(x=[bins.confidence[i] for i in keep], y=[bins.accuracy[i] for i in keep], mode="lines+markers",
                             name=names[m], line=dict(color=PALETTE[j % len(PALETTE)]),
                             text=[f"{bins.count[i]} images" for i in keep]))
    coverage, accuracy = risk_coverage(conf, correct)
    step = max(1, len(coverage) // 300)
    risk.add_trace(go.Scatter(x=coverage[::step] + [coverage[-1]], y=accuracy[::step] + [accuracy[-1]], mode="lines",
                              name=names[m], line=dict(color=PALETTE[j % len(PALETTE)])))
rel.update_layout(template="plotly_white", height=360, title="Reliability diagram", xaxis_title="mean confidence in bin",
                  yaxis_title="accuracy in bin", margin=dict(t=40), xaxis=dict(range=[0, 1]), yaxis=dict(range=[0, 1.02]))
risk.update_layout(template="plotly_white", height=360, title="Selective prediction (risk–coverage)",
                   xaxis=dict(title="share of images answered (most confident first)", tickformat=".0%"),
                   yaxis=dict(title="accuracy on those", tickformat=".1%"), margin=dict(t=40))
c1.plotly_chart(rel, key="reliability", config=png_config("reliability_diagram"))
c2.plotly_chart(risk, key="risk_coverage", config=png_config("risk_coverage"))

st.subheader("Correct vs misclassified")
focus = st.selectbox("Model", model_ids, format_func=names.get, key="focus")
proba = results[focus][0]
conf, pred = confidence(proba), proba.argmax(1)
right = pred == y
split_fig = go.Figure([go.Histogram(x=conf[right].numpy(), name=f"correct ({int(right.sum())})", opacity=0.6,
                                    histnorm="percent", xbins=dict(start=0, end=1.0001, size=0.02)),
                       go.Histogram(x=conf[~right].numpy(), name=f"misclassified ({int((~right).sum())})", opacity=0.6,
                                    histnorm="percent", xbins=dict(start=0, end=1.0001, size=0.02))])
split_fig.update_layout(barmode="overlay", template="plotly_white", height=300, margin=dict(t=10), xaxis_title="m(x)",
                        yaxis_title="% of the group")
st.plotly_chart(split_fig, key="split", config=png_config("confidence_correct_vs_wrong"))
shown_x = x
if results[focus][3]:
    st.caption("The gallery shows the clean images; the predictions and confidences are on their attacked versions.")


focus_is_network = arch_of[focus] not in ("knn", "logreg")


def gallery(title: str, indices: list[int], key: str):
    """Eight images with their prediction; each opens on the Saliency page (any split) or the Attack page (test)."""
    st.markdown(f"**{title}**")
    if not indices:
        st.caption("none")
        return
    cols = st.columns(8)
    for col, i in zip(cols, indices[:8]):
        col.image(shown_x[i, 0].numpy(), clamp=True, width=72,
                  caption=f"#{i}: {data.info.class_names[int(pred[i])]} {100 * float(conf[i]):.0f}% (true {data.info.class_names[int(y[i])]})")
        target = dict(dataset=dataset, split=split, index=i, model_id=focus if focus_is_network else None)
        if col.button("Saliency", key=f"{key}_saliency_{i}", icon=":material/visibility:", type="tertiary",
                      help="Open this image on the Saliency page: where did the models look?"):
            open_image("pages/saliency.py", **target)
        if col.button("Attack", key=f"{key}_attack_{i}", icon=":material/bolt:", type="tertiary", disabled=split != "test",
                      help="Open this image in the Attack page's targeted section" if split == "test"
                      else "The Attack page works on test images: switch the split to test"):
            open_image("pages/attack.py", **target)


wrong_idx = (~right).nonzero().flatten()
right_idx = right.nonzero().flatten()
gallery("Most confident mistakes", wrong_idx[conf[wrong_idx].argsort(descending=True)].tolist(), "mistakes")
gallery("Least confident correct predictions", right_idx[conf[right_idx].argsort()].tolist(), "unsure")
st.caption(f"Image numbers are indices in the {split} split. **Saliency** and **Attack** open an image on those pages"
           + (f" with {names[focus]} as the sidebar model." if focus_is_network else "."))

table = "model," + ",".join(f"q{q}" for q in SEED_QUANTILES) + "\n" + "\n".join(
    f"{r['Model']}," + ",".join(f"{r[f'Q{q:.2f}']:.6f}" for q in SEED_QUANTILES) for r in q_rows)
c1, c2 = st.columns(2)
c1.download_button("Download the quantiles (CSV)", table, file_name="confidence_quantiles.csv", mime="text/csv",
                   icon=":material/download:", on_click="ignore")
columns = list(dict.fromkeys(k for r in rows for k in r))
metrics_csv = ",".join(columns) + "\n" + "\n".join(",".join("" if r.get(k) is None else str(r[k]) for k in columns) for r in rows)
c2.download_button("Download accuracy and calibration (CSV)", metrics_csv, file_name="calibration.csv", mime="text/csv",
                   icon=":material/download:", on_click="ignore")
