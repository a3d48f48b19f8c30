"""Plotly figures that the pages show, callable from Python as well (no Streamlit here)."""
from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go
from plotly.subplots import make_subplots

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]


def training_curves_figure(histories: Mapping[str, Mapping], *, height: int = 360) -> go.Figure:
    """Loss (left) and accuracy (right) against epochs for one or several training histories.

    Each history may hold ``batches`` (fractional epoch, running train loss, running train acc)
    and per-epoch ``epoch``, ``val_loss``, ``val_acc``. With one history, train and validation
    are shown in two colours; with several, one colour per model, validation solid, train dotted.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss (cross-entropy)", "Accuracy"), horizontal_spacing=0.1)
    single = len(histories) == 1
    for i, (name, h) in enumerate(histories.items()):
        colour = PALETTE[i % len(PALETTE)]
        batches = h.get("batches") or []
        if batches:
            x = [b[0] for b in batches]
            train_style = dict(color=PALETTE[0] if single else colour, width=1.5, dash="solid" if single else "dot")
            label = "train" if single else f"{name} (train)"
            fig.add_trace(go.Scatter(x=x, y=[b[1] for b in batches], mode="lines", name=label, legendgroup=label,
                                     line=train_style), row=1, col=1)
            fig.add_trace(go.Scatter(x=x, y=[b[2] for b in batches], mode="lines", name=label, legendgroup=label,
                                     line=train_style, showlegend=False), row=1, col=2)
        if h.get("epoch"):
            val_colour = PALETTE[1] if single else colour
            label = "validation" if single else name
            marker = dict(color=val_colour, size=8)
            fig.add_trace(go.Scatter(x=h["epoch"], y=h["val_loss"], mode="lines+markers", name=label, legendgroup=label,
                                     line=dict(color=val_colour, width=2.5), marker=marker), row=1, col=1)
            fig.add_trace(go.Scatter(x=h["epoch"], y=h["val_acc"], mode="lines+markers", name=label, legendgroup=label,
                                     line=dict(color=val_colour, width=2.5), marker=marker, showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="epoch", rangemode="tozero")
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(tickformat=".1%", row=1, col=2)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25),
                      template="plotly_white")
    return fig


def eps_slider_figure(
    eps_frames,
    curves: Mapping[str, list[float]],
    *,
    norm: str = "linf",
    gallery: Mapping | None = None,
    class_names=None,
    height: int | None = None,
) -> go.Figure:
    """Accuracy against eps with a slider that runs entirely in the browser.

    ``curves`` gives, per model, the accuracy at each eps of ``eps_frames`` (from minimal-eps
    lookups, so a fine grid is free). Each slider position is a precomputed Plotly frame: the
    markers on the curves, the accuracy in the title and, with ``gallery``, the adversarial
    images, their amplified perturbation and predicted labels follow the handle while it is
    dragged, with no round trip to the server.

    ``gallery``: {"clean": (K, H, W) array in [0, 1], "adversarial": (F, K, H, W), "labels": (K,),
    "predictions": (F, K), "confidences": (F, K), "model": name}.
    """
    import numpy as np

    eps_frames = [float(e) for e in eps_frames]
    k = 0 if gallery is None else len(gallery["labels"])
    names = list(class_names) if class_names is not None else [str(i) for i in range(10)]
    rows = 1 if k == 0 else 3
    specs = [[{"colspan": max(k, 1)}] + [None] * (max(k, 1) - 1)] + [[{}] * k for _ in range(rows - 1)]
    fig = make_subplots(rows=rows, cols=max(k, 1), specs=specs, row_heights=[0.54, 0.2, 0.2][:rows] if k else None,
                        vertical_spacing=0.1 if k else 0.1, horizontal_spacing=0.012)
    eps_label = {"linf": "ε (L∞, pixel scale 0–1)", "l2": "ε (L2 norm)", "l1": "ε (L1 norm)"}[norm]

    def acc_text(i):
        return " · ".join(f"{n}: {100 * c[i]:.1f}%" for n, c in curves.items())

    for j, (name, acc) in enumerate(curves.items()):
        colour = PALETTE[j % len(PALETTE)]
        fig.add_trace(go.Scatter(x=eps_frames, y=acc, mode="lines", name=name, line=dict(color=colour, width=3),
                                 hovertemplate="ε=%{x:.3f}<br>accuracy %{y:.1%}<extra>" + name + "</extra>"), row=1, col=1)
    dynamic = []  # indices of the traces each frame replaces
    for j, (name, acc) in enumerate(curves.items()):
        dynamic.append(len(fig.data))
        fig.add_trace(go.Scatter(x=[eps_frames[0]], y=[acc[0]], mode="markers", showlegend=False, hoverinfo="skip",
                                 marker=dict(color=PALETTE[j % len(PALETTE)], size=14, line=dict(color="white", width=2))),
                      row=1, col=1)

    def image_trace(img, amplified=False):
        # Heatmaps draw row 0 at the bottom, hence the flip; 3 decimals (finer than 8-bit grey)
        # keep the frames a few MB lighter for the browser.
        z = np.flipud(np.round(img, 3))
        return go.Heatmap(z=z, zmin=0, zmax=1, colorscale="RdBu" if amplified else "gray", reversescale=amplified,
                          showscale=False, hoverinfo="skip")

    def annotations_for(i):
        notes = []
        for c in range(k):
            pred, conf, true = int(gallery["predictions"][i][c]), float(gallery["confidences"][i][c]), int(gallery["labels"][c])
            colour = "#2ca02c" if pred == true else "#d62728"
            notes.append(dict(text=f"<b>{names[pred]}</b> {100 * conf:.0f}%", x=(c + 0.5) / k, y=label_y, xref="paper",
                              yref="paper", yanchor="top", showarrow=False, font=dict(color=colour, size=12)))
        return notes

    # Predicted labels go just under the adversarial images, clear of the curve's axis title.
    label_y = fig.layout["yaxis2"].domain[0] - 0.004 if k else 0.0
    if k:
        for c in range(k):
            dynamic.append(len(fig.data))
            fig.add_trace(image_trace(gallery["adversarial"][0][c]), row=2, col=c + 1)
        for c in range(k):
            dynamic.append(len(fig.data))
            delta = np.clip((gallery["adversarial"][0][c] - gallery["clean"][c]) * 10 * 0.5 + 0.5, 0, 1)
            fig.add_trace(image_trace(delta, amplified=True), row=3, col=c + 1)
        fig.update_xaxes(visible=False, row=2)
        fig.update_xaxes(visible=False, row=3)
        fig.update_yaxes(visible=False, scaleanchor=None, row=2)
        fig.update_yaxes(visible=False, row=3)
        for r in (2, 3):
            for c in range(k):
                fig.update_yaxes(scaleanchor=f"x{(r - 2) * k + c + 2}", row=r, col=c + 1)

    frames = []
    for i, eps in enumerate(eps_frames):
        data = [go.Scatter(x=[eps], y=[acc[i]]) for acc in curves.values()]
        layout = {"title.text": f"ε = {eps:.3f}   ·   {acc_text(i)}"}
        if k:
            data += [image_trace(gallery["adversarial"][i][c]) for c in range(k)]
            data += [image_trace(np.clip((gallery["adversarial"][i][c] - gallery["clean"][c]) * 5 + 0.5, 0, 1), True)
                     for c in range(k)]
            layout["annotations"] = annotations_for(i)
        frames.append(go.Frame(name=f"{i}", data=data, traces=dynamic, layout=layout))
    fig.frames = frames
    steps = [dict(method="animate", label=f"{eps:.3f}",
                  args=[[f"{i}"], dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))])
             for i, eps in enumerate(eps_frames)]
    fig.update_layout(
        sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="ε = ", font=dict(size=16)), pad=dict(t=50),
                      x=0.0, len=1.0)],
        title=dict(text=f"ε = {eps_frames[0]:.3f}   ·   {acc_text(0)}", font=dict(size=16)),
        template="plotly_white", height=height or (720 if k else 460), margin=dict(l=10, r=10, t=60, b=10),
        legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"),
        annotations=annotations_for(0) if k else [],
    )
    fig.update_xaxes(title_text=eps_label, row=1, col=1)
    fig.update_yaxes(title_text="accuracy under attack", tickformat=".0%", range=[0, 1.02], row=1, col=1)
    return fig
