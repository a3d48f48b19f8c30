"""What the Class Visualization page derives from a morph's result, built once per server process (not a page).

Decorated once, at import (as lab_pages.attack_results): a cached function defined in the page script is wrapped
anew at each of a room's runs, and Streamlit keys a wrapper by its function's source, re-read and re-tokenised
each time."""
from __future__ import annotations

import hashlib

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from lab_pages._outputs import picture, png_bytes, shared_figure
from robust_core.classviz import VisualizationResult
from robust_core.plots import morph_figure as plots_morph_figure


def _frames_digest(result: VisualizationResult) -> str:
    """The cache key of a result's figure and pictures, hashed once per result: every student's view of a room's
    shared morph asks for both, and hashing the frames each time was ~1 ms per call."""
    digest = result.__dict__.get("_frames_digest")
    if digest is None:
        digest = hashlib.sha1(result.frames.cpu().numpy().tobytes()).hexdigest()
        object.__setattr__(result, "_frames_digest", digest)
    return digest


@st.cache_resource(show_spinner=False, max_entries=64, hash_funcs={VisualizationResult: _frames_digest})
def morph_figure(result: VisualizationResult, title: str, target: int, class_names: tuple[str, ...],
                 positions: int = 41) -> go.Figure:
    """Built once per server for a result (a room shares the lecture path's morph): only re-sent to the next visitor.
    ``positions``: the slider's (fewer on a lecture path: each student is sent the whole figure)."""
    return shared_figure(plots_morph_figure(picture(result.frames[:, 0]),  # (T, H, W) grey, (T, H, W, 3) colour
                                            result.probabilities[:, 0].cpu().numpy(), result.recorded_steps,
                                            target=int(target), class_names=class_names, title=title,
                                            max_frames=positions))


@st.cache_resource(show_spinner=False, max_entries=64, hash_funcs={VisualizationResult: _frames_digest})
def morph_pictures(result: VisualizationResult) -> tuple[bytes, bytes]:
    """The final image and the change as PNG bytes (the change around grey, at full contrast): encoded once per server,
    not at every student's run (and as PNG: Streamlit's default would re-encode them as JPEG, blurring the pixels)."""
    diff = picture(result.final[0] - result.frames[0, 0])
    change = np.clip(diff * 0.5 / max(np.abs(diff).max(), 1e-6) + 0.5, 0, 1)
    return png_bytes(picture(result.final[0])), png_bytes(change)

