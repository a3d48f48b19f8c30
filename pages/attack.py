"""Attack page: robust accuracy against eps with an instant slider, a gallery, and attack comparisons."""
import io
import json
import time

import numpy as np
import streamlit as st
import torch

from pages._shared import current_dataset, format_percent, get_dataset, get_store, require_shell
from robust_core.attacks import ATTACKS
from robust_core.evaluation import (EvalKey, EvaluationCache, accuracy_at, attack_comparison_warnings, cached_minimal_eps,
                                    model_sanity_warnings, perturbation_stats, sanity_warnings)
from robust_core.models import predict_proba
from robust_core.plots import eps_slider_figure

SUBSET_SIZES = [100, 200, 500, 1000, 2000, 5000, 10000]
EPS_MAX = {"linf": 0.4, "l2": 4.0, "l1": 40.0}
FRAMES = 41  # slider positions: fine enough to feel continuous, light enough to ship to the browser
GALLERY_SIZE = 8
# The default parameters of each budgeted attack, as the controls below set them: the comparison
# view uses the same dictionaries, so both views share their cache entries.
DEFAULT_PARAMS = {"fgsm": {}, "pgd": {"steps": 40, "restarts": 1}, "pgd_l2": {"steps": 40, "restarts": 1},
                  "apgd_ce": {"steps": 100}, "apgd_dlr": {"steps": 100}, "apgd_t": {"steps": 100},
                  "square": {"n_queries": 1000}}


@st.cache_resource(show_spinner=False)
def get_eval_cache(store_root: str) -> EvaluationCache:
    return EvaluationCache(get_store())


require_shell()
st.title("Attack")
dataset = current_dataset()
store = get_store()
data = get_dataset(dataset)
if data is None:
    st.stop()
networks = [e for e in store.list(dataset) if e.meta["config"]["arch"] not in ("logreg", "knn")]
if not networks:
    st.info("No trained network for this dataset yet: train one on the Train page first.", icon=":material/info:")
    st.stop()
names = {e.model_id: e.name for e in networks}
cache = get_eval_cache(str(store.root))

with st.container(border=True):
    c1, c2, c3 = st.columns([3, 2, 1])
    default_models = [st.session_state["model_id"]] if st.session_state.get("model_id") in names else [networks[0].model_id]
    model_ids = c1.multiselect("Models", list(names), default=default_models, format_func=names.get, max_selections=6)
    attack = c2.selectbox("Attack", list(ATTACKS), index=list(ATTACKS).index("pgd"),
                          format_func=lambda a: f"{ATTACKS[a].title} · {ATTACKS[a].norm.upper()}")
    n_images = c3.selectbox("Test images", SUBSET_SIZES, index=SUBSET_SIZES.index(500))
    spec = ATTACKS[attack]
    c1, c2, c3, c4 = st.columns(4)
    params: dict = {}
    if spec.kind != "minimal":
        params["eps_max"] = c1.number_input(f"Largest ε ({spec.norm.upper()})", 0.01, {"linf": 1.0, "l2": 28.0, "l1": 784.0}[spec.norm],
                                            EPS_MAX[spec.norm], format="%.3f")
    if attack in ("pgd", "pgd_l2"):
        params["steps"] = c2.number_input("Steps", 1, 1000, 40)
        params["restarts"] = c3.number_input("Restarts", 1, 20, 1)
    elif attack.startswith("apgd"):
        params["steps"] = c2.number_input("Steps", 1, 1000, 100)
    elif attack == "square":
        params["n_queries"] = c2.number_input("Queries per image", 10, 20000, 1000)
    elif attack in ("cw_l2", "ead"):
        params["steps"] = c2.number_input("Steps per search", 10, 2000, 100)
    seed = c4.number_input("Seed", 0, 2**31 - 1, 0)
    st.caption(f"{spec.title}: {spec.paper}. " + (spec.fn.__doc__ or "").strip().split("\n")[0])

if not model_ids:
    st.info("Pick at least one model.")
    st.stop()

x, y = data.test_x[:n_images], data.test_y[:n_images]
keys = {m: EvalKey(m, attack, tuple(sorted(params.items())), n_images, int(seed)) for m in model_ids}
missing = [m for m in model_ids if cache.get(keys[m]) is None]
if missing:
    st.warning(f"Not computed yet for {len(missing)} model(s): {', '.join(names[m] for m in missing)}. "
               f"Computing the per-image minimal ε takes a while the first time; afterwards every view is instant.",
               icon=":material/hourglass:")
    if st.button(f"Compute ({n_images} images × {len(missing)} model(s))", type="primary", icon=":material/bolt:"):
        bar = st.progress(0.0, text="Starting…")
        start = time.perf_counter()
        for i, m in enumerate(missing):
            def progress(fraction, i=i, m=m):
                done = (i + fraction) / len(missing)
                elapsed = time.perf_counter() - start
                bar.progress(done, text=f"{names[m]}: {100 * fraction:.0f}% · elapsed {elapsed:.0f} s"
                             + (f" · ETA {elapsed / done - elapsed:.0f} s" if done > 0.02 else ""))
            cached_minimal_eps(store, cache, m, x, y, attack=attack, seed=int(seed), on_progress=progress, **params)
        bar.empty()
        st.rerun()
    st.stop()

t0 = time.perf_counter()
min_eps = {m: cache.get(keys[m]) for m in model_ids}
eps_max = params.get("eps_max") or max(float(v[torch.isfinite(v)].max()) if torch.isfinite(v).any() else 1.0 for v in min_eps.values())
eps_frames = np.linspace(0, eps_max, FRAMES).round(6).tolist()
curves = {names[m]: accuracy_at(v, eps_frames).tolist() for m, v in min_eps.items()}


@st.cache_data(show_spinner="Crafting the gallery's adversarial examples…", max_entries=32)
def gallery_frames(model_id: str, attack: str, params_key: tuple, start: int, eps_frames: tuple, seed: int, dataset: str):
    """Adversarial versions of GALLERY_SIZE test images at every slider position (attacked once each)."""
    model = store.load(model_id)
    spec = ATTACKS[attack]
    xs, ys = data.test_x[start : start + GALLERY_SIZE], data.test_y[start : start + GALLERY_SIZE]
    kwargs = {k: v for k, v in dict(params_key).items() if k != "eps_max"}
    if spec.kind == "minimal":  # one run gives the minimal perturbation; a frame shows it once eps allows it
        full = spec(model, xs, ys, seed=seed, **kwargs)
        norms = (full - xs).flatten(1).norm(p={"l2": 2, "l1": 1}.get(spec.norm, float("inf")), dim=1)
        advs = [torch.where((norms <= e)[:, None, None, None], full, xs) for e in eps_frames]
    else:
        advs = [xs if e == 0 else spec(model, xs, ys, eps=e, seed=seed, **kwargs) for e in eps_frames]
    stacked = torch.stack(advs)  # (F, K, C, H, W)
    proba = predict_proba(model, stacked.flatten(0, 1)).view(len(eps_frames), len(xs), -1)
    return {"clean": xs[:, 0].numpy(), "adversarial": stacked[:, :, 0].numpy(), "labels": ys.numpy(),
            "predictions": proba.argmax(2).numpy(), "confidences": proba.amax(2).numpy(), "model": names[model_id]}


with st.container(border=True):
    g1, g2, g3 = st.columns([2, 2, 3])
    gallery_model = g1.selectbox("Gallery model", model_ids, format_func=names.get)
    start = g2.number_input("First test image", 0, len(data.test_x) - GALLERY_SIZE, 0, step=GALLERY_SIZE,
                            help=f"The gallery shows {GALLERY_SIZE} consecutive test images.")
    g3.caption("Drag the slider: the curves, the accuracy in the title, the adversarial images (middle row: "
               "predicted class and confidence, green if still correct) and their perturbation ×10 (bottom row; "
               "red = brighter, blue = darker) follow the handle in your browser, with no recomputation.")
    gallery = None
    if data.info.shape[0] == 1:
        gallery_started = time.perf_counter()
        gallery = gallery_frames(gallery_model, attack, tuple(sorted(params.items())), int(start), tuple(eps_frames), int(seed), dataset)
        t0 += time.perf_counter() - gallery_started  # the gallery's attacks run once, then come from the cache
    st.plotly_chart(eps_slider_figure(eps_frames, curves, norm=spec.norm, gallery=gallery, class_names=data.info.class_names),
                    key="eps_slider", config={"displayModeBar": False})
elapsed_ms = 1000 * (time.perf_counter() - t0)

rows = []
for m, v in min_eps.items():
    stats = perturbation_stats(v)
    rows.append({"Model": names[m], "Clean accuracy": float(accuracy_at(v, [0.0])[0]),
                 **{f"Accuracy at ε={e:g}": float(accuracy_at(v, [e])[0]) for e in np.linspace(0, eps_max, 5)[1:].round(4)},
                 f"Median minimal {spec.norm.upper()}": stats["median"], "Q25": stats["q25"], "Q75": stats["q75"],
                 "Broken": f"{stats['n']}/{len(v)}"})
st.dataframe(rows, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="percent") for c in rows[0] if c.startswith(("Clean", "Accuracy"))})
st.caption(f"{n_images} test images · seed {seed} · curves from cached per-image minimal ε, drawn in {elapsed_ms:.0f} ms.")

warnings = sanity_warnings({names[m]: v for m, v in min_eps.items()}, attack=attack, eps_max=eps_max)
for w in warnings:
    st.warning(w, icon=":material/report:")

c1, c2 = st.columns(2)
csv = "eps," + ",".join(curves) + "\n" + "\n".join(
    f"{e}," + ",".join(f"{curves[n][i]:.6f}" for n in curves) for i, e in enumerate(eps_frames))
c1.download_button("Download curves (CSV)", csv, file_name=f"robust_accuracy_{attack}.csv", mime="text/csv",
                   icon=":material/download:", on_click="ignore")
payload = {"attack": attack, "norm": spec.norm, "params": params, "n_images": n_images, "seed": int(seed),
           "eps": eps_frames, "accuracy": curves,
           "min_eps": {names[m]: [x if np.isfinite(x) else None for x in v.tolist()] for m, v in min_eps.items()}}
c2.download_button("Download curves and minimal ε (JSON)", json.dumps(payload), file_name=f"robust_accuracy_{attack}.json",
                   mime="application/json", icon=":material/download:", on_click="ignore")
if gallery is not None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, eps=np.array(eps_frames), clean=gallery["clean"], adversarial=gallery["adversarial"],
                        labels=gallery["labels"], predictions=gallery["predictions"], confidences=gallery["confidences"])
    st.download_button("Download the gallery's adversarial examples (.npz, every ε)", buffer.getvalue(),
                       file_name=f"adversarial_{attack}.npz", icon=":material/download:", on_click="ignore")

st.divider()
st.subheader("Compare attacks on one model")
st.caption("A defence that only masks gradients looks robust to gradient attacks and falls to the gradient-free "
           "Square attack, or even to single-step FGSM: the weakest curve is the one to believe.")
linf_attacks = [a for a, sp in ATTACKS.items() if sp.norm == "linf" and sp.kind != "minimal"]
c1, c2 = st.columns([2, 3])
cmp_model = c1.selectbox("Model to compare on", model_ids, format_func=names.get, key="cmp_model")
cmp_attacks = c2.multiselect("Attacks (L∞, default parameters, largest ε 0.4)", linf_attacks,
                             default=["fgsm", "pgd", "apgd_ce", "square"], format_func=lambda a: ATTACKS[a].title)
cmp_params = {a: {"eps_max": EPS_MAX["linf"], **DEFAULT_PARAMS[a]} for a in cmp_attacks}
cmp_keys = {a: EvalKey(cmp_model, a, tuple(sorted(p.items())), n_images, int(seed)) for a, p in cmp_params.items()}
cmp_missing = [a for a in cmp_attacks if cache.get(cmp_keys[a]) is None]
if cmp_missing and st.button(f"Compute {', '.join(ATTACKS[a].title for a in cmp_missing)} on {names[cmp_model]}",
                             icon=":material/bolt:"):
    bar = st.progress(0.0, text="Starting…")
    for i, a in enumerate(cmp_missing):
        cached_minimal_eps(store, cache, cmp_model, x, y, attack=a, seed=int(seed),
                           on_progress=lambda f, i=i, a=a: bar.progress((i + f) / len(cmp_missing), text=f"{ATTACKS[a].title}: {100 * f:.0f}%"),
                           **cmp_params[a])
    st.rerun()
ready = {a: cache.get(cmp_keys[a]) for a in cmp_attacks if cache.get(cmp_keys[a]) is not None}
if ready:
    import plotly.graph_objects as go

    grid = np.linspace(0, EPS_MAX["linf"], FRAMES).round(6).tolist()
    by_attack = {a: accuracy_at(v, grid).tolist() for a, v in ready.items()}
    fig = go.Figure([go.Scatter(x=grid, y=acc, mode="lines", name=ATTACKS[a].title, line=dict(width=3)) for a, acc in by_attack.items()])
    fig.update_layout(template="plotly_white", height=380, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis_title="ε (L∞, pixel scale 0–1)", yaxis=dict(title="accuracy under attack", tickformat=".0%", range=[0, 1.02]))
    st.plotly_chart(fig, key="attack_comparison")
    for w in attack_comparison_warnings(by_attack, grid):
        st.warning(w, icon=":material/report:")
    if len(ready) < len(cmp_attacks):
        st.caption(f"Not computed yet: {', '.join(ATTACKS[a].title for a in cmp_missing)}.")
for w in model_sanity_warnings(store.load(cmp_model), x[:200], y[:200]):
    st.warning(w, icon=":material/report:")
