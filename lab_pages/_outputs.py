"""What a page shows, made once per server for every session that asks for the same thing (not a page).

A room of 60 students opening one lecture path asks 60 times for the same figure, table and downloads. Each Streamlit
session reruns the page's script, so without this every student's run would rebuild them: ~0.1-0.2 s of the server's
one interpreter per view for the saliency grid and the confidence figures (py-spy, benchmarks/view_cost.py). The
outputs here are built by the first session and then handed, read-only, to the others.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import plotly.graph_objects as go
import plotly.io
import streamlit as st

from lab_pages._layout import presenting


def shared_figure(fig):
    """``fig`` as a figure shared read-only by every session (one built in ``st.cache_resource``).

    ``st.plotly_chart`` calls ``fig.to_dict()`` (a deep copy) and then serialises the copy at every run. For the
    ε-slider figure (1–2 MB of frames) the copy was ~12 ms of the server's one interpreter per student's run; here
    it is made once and the same dict is handed out afterwards. Never change the figure once shared.
    """
    return SharedFigure(fig.to_dict())


class SharedFigure(go.Figure):
    """A figure whose ``to_dict()`` is the dict it was built from, not a new deep copy (see shared_figure), and whose
    JSON is written once: ``st.plotly_chart`` serialises that dict with ``plotly.io.to_json`` at every run, ~15 ms
    (orjson) to ~60 ms (json) per student's view of a 3 MB figure."""

    screen_styled = False  # True: already in the current screen's style (lab_pages._outputs.screen_figure)

    def __init__(self, frozen: dict):
        super().__init__(frozen, _validate=False)
        self._frozen = frozen
        self._json: str | None = None
        _SHARED_BY_DICT[id(frozen)] = self

    def to_dict(self):
        return self._frozen


_SHARED_BY_DICT: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # id(frozen dict) -> its SharedFigure
_plotly_to_json = plotly.io.to_json


def _to_json_once(fig, *args, **kwargs):
    """``plotly.io.to_json``, answered from a shared figure's own JSON when given its frozen dict (as Streamlit
    does)."""
    shared = (_SHARED_BY_DICT.get(id(fig)) if isinstance(fig, dict) and not args and set(kwargs) <= {"validate"}
              else None)
    if shared is None or shared._frozen is not fig:
        return _plotly_to_json(fig, *args, **kwargs)
    if shared._json is None:
        shared._json = _plotly_to_json(fig, **kwargs)
    return shared._json


plotly.io.to_json = _to_json_once  # Streamlit calls it through the module: shared figures are serialised once


class _Outputs:
    """A least-recently-used map per kind of output, with one lock per key so a burst builds it once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.kinds: dict[str, OrderedDict] = {}
        self.key_locks: dict[tuple, threading.Lock] = {}


@st.cache_resource(show_spinner=False)
def _outputs() -> _Outputs:
    return _Outputs()


def shared_output(kind: str, key: Hashable, build: Callable[[], Any], *, max_entries: int = 32) -> Any:
    """``build()`` once per (``kind``, ``key``) for every session of this server; the same object afterwards.

    ``key`` must name everything the output depends on (the screen's style included: see :func:`screen_figure`).
    Sessions asking for a key being built wait for it instead of building it again. ``build`` runs in the asking
    session's script, so it may show progress; what it returns is shared and must never be changed."""
    outputs = _outputs()
    with outputs.lock:
        entries = outputs.kinds.setdefault(kind, OrderedDict())
        if key in entries:
            entries.move_to_end(key)
            return entries[key]
        key_lock = outputs.key_locks.setdefault((kind, key), threading.Lock())
    with key_lock:
        with outputs.lock:
            if key in entries:
                return entries[key]
        try:
            value = build()
            with outputs.lock:
                entries[key] = value
                while len(entries) > max_entries:
                    entries.popitem(last=False)
        finally:  # built, or not (an error, a rerun that interrupted the script): no lock is kept for the key
            with outputs.lock:
                outputs.key_locks.pop((kind, key), None)
        return value


def picture(images):
    """Images (..., C, H, W), a tensor, as ``st.image``, PNGs and the figures take them: (..., H, W) grey, or
    (..., H, W, 3) colour (CIFAR-10)."""
    import numpy as np

    array = images.detach().cpu().numpy()
    return array[..., 0, :, :] if array.shape[-3] == 1 else np.moveaxis(array, -3, -1)


def png_bytes(image, *, size: int | None = None) -> bytes:
    """A (H, W) grey or (H, W, 3) colour array in [0, 1] as PNG bytes, enlarged to ``size`` x ``size`` without
    smoothing when given. Handed to ``st.image(..., output_format="PNG")`` as they are: encoded once, by the first
    session, where Streamlit's "auto" format would re-encode the array as JPEG at every run, blurring the pixels."""
    import io

    import numpy as np
    from PIL import Image

    picture = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    if size is not None:
        picture = picture.resize((size, size), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def screen_figure(fig) -> SharedFigure:
    """``fig`` frozen for sharing, in the style of the current screen (the projector's when presenting): a key of
    :func:`shared_output` holding it must include :func:`presenting`. :func:`lab_pages._layout.show_chart` shows it
    as it is."""
    from robust_core.plots import projector_style

    shared = shared_figure(projector_style(fig) if presenting() else fig)
    shared.screen_styled = True
    return shared


def shared_table(records: list[dict]):
    """``records`` as an Arrow table for ``st.dataframe``, converted once for every session showing the same rows:
    Streamlit converts a list of dicts through pandas to Arrow at every run (a tenth of the Attack page's CPU)."""
    import json

    import pandas as pd
    import pyarrow as pa

    key = json.dumps(records, sort_keys=True, default=repr)
    return shared_output("table", key, lambda: pa.Table.from_pandas(pd.DataFrame(records), preserve_index=False),
                         max_entries=128)
