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
