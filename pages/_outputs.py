"""What a page shows, made once per server for every session that asks for the same thing (not a page).

A room of 60 students opening one lecture path asks 60 times for the same figure, table and downloads. Each Streamlit
session reruns the page's script, so without this every student's run would rebuild them: ~0.1-0.2 s of the server's
one interpreter per view for the saliency grid and the confidence figures (py-spy, benchmarks/view_cost.py). The
outputs here are built by the first session and then handed, read-only, to the others.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import streamlit as st

from pages._shared import SharedFigure, presenting, shared_figure


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
        value = build()
        with outputs.lock:
            entries[key] = value
            while len(entries) > max_entries:
                entries.popitem(last=False)
            outputs.key_locks.pop((kind, key), None)
        return value


def screen_figure(fig) -> SharedFigure:
    """``fig`` frozen for sharing, in the style of the current screen (the projector's when presenting): a key of
    :func:`shared_output` holding it must include :func:`presenting`. :func:`pages._shared.show_chart` shows it as it is."""
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
