"""The guess challenge's figures: the room's answers as a histogram, and, once revealed, the measured value on the
curve it was read from."""
from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

HISTOGRAM_BINS = 20


def answers_figure(answers: Sequence[float], *, low: float, high: float, measured: float | None = None,
                   reference: dict | None = None, height: int = 330) -> go.Figure:
    """The answers' histogram over [low, high] (``HISTOGRAM_BINS`` equal bins, counts of students); with ``measured``
    (the reveal), the measured value as a vertical line and, from ``reference`` (robust_core.challenges.reference's
    guess reference), the accuracy curve on a second axis with the threshold it crosses."""
    import numpy as np

    counts, edges = np.histogram(np.clip(np.asarray(answers, dtype=float), low, high), bins=HISTOGRAM_BINS,
                                 range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure(go.Bar(x=centres, y=counts, width=(high - low) / HISTOGRAM_BINS * 0.92, marker_color="#4C78A8",
                           name="answers", hovertemplate="%{x:.3f}: %{y} answers<extra></extra>"))
    # Whole students on the axis: a tick every 1, 2, 5, ... so that about five show.
    top = max(int(counts.max()) if len(counts) else 0, 1)
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100) if top / s <= 5)
    fig.update_layout(height=height, margin=dict(l=50, r=50, t=30, b=45), showlegend=False,
                      xaxis=dict(title="answer", range=[low, high]),
                      yaxis=dict(title="students", range=[0, top * 1.1], tick0=0, dtick=step))
    if measured is not None:
        fig.add_vline(x=measured, line=dict(color="#E45756", width=3),
                      annotation_text=f"measured {measured:.3f}", annotation_position="top")
        if reference and reference.get("eps"):
            fig.add_trace(go.Scatter(x=reference["eps"], y=[100 * a for a in reference["accuracy"]], yaxis="y2",
                                     mode="lines", line=dict(color="#E45756", width=2, dash="dot"),
                                     name="accuracy", hovertemplate="ε %{x:.3f}: %{y:.1f}%<extra></extra>"))
            fig.add_hline(y=100 * reference["threshold"], yref="y2", line=dict(color="#888", width=1, dash="dash"))
            fig.update_layout(yaxis2=dict(title="accuracy (%)", overlaying="y", side="right", range=[0, 100],
                                          tick0=0, dtick=25, showgrid=False))
    return fig


__all__ = ["HISTOGRAM_BINS", "answers_figure"]
