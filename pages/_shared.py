"""Streamlit helpers shared by the pages: cached resources and the sidebar state (not a page)."""
from __future__ import annotations

import os

import streamlit as st

from robust_core.data import DATASETS, DataNotFoundError, load_dataset, resolve_data_dir
from robust_core.shipped import install_shipped
from robust_core.store import ModelStore, resolve_store_dir

# "0" turns off installing the shipped models (tests do, to start from an empty store).
SHIPPED_ENV = "ROBUST_SHIPPED_MODELS"
_install_errors: list[str] = []


@st.cache_resource(show_spinner="Installing the shipped models…")
def _store(root: str) -> ModelStore:
    store = ModelStore(root)
    if os.environ.get(SHIPPED_ENV, "1") != "0":
        # Once per server process and store: models shipped in assets/ join the store, so every page
        # has models to show before anyone trains. A damaged file is reported, never fatal.
        for shipped, _, status in install_shipped(store):
            if status.startswith("error"):
                _install_errors.append(f"{shipped.file.name}: {status}")
    return store


def get_store() -> ModelStore:
    """One store per folder and server process, so its in-memory model cache is shared by every session."""
    store = _store(str(resolve_store_dir()))
    for message in _install_errors:
        st.warning(f"A shipped model could not be installed: {message}")
    return store


@st.cache_resource(show_spinner="Loading the dataset into memory…")
def _dataset(name: str, root: str):
    return load_dataset(name, root)


def get_dataset(name: str):
    """The dataset's splits, or None after showing a clear error in the page."""
    try:
        return _dataset(name, str(resolve_data_dir()))
    except DataNotFoundError as exc:
        st.error(f"**{DATASETS[name].title} is not available.**\n\n```\n{exc}\n```")
        return None


def current_dataset() -> str:
    return st.session_state.get("dataset", "mnist")


def format_percent(value) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def require_shell() -> None:
    """Make sure the page runs inside app.py (navigation, sidebar, page config).

    Streamlit starts a server in its old multipage mode when a ``pages/`` folder exists and
    switches to ``st.navigation`` only once some session has run app.py. The first visitor who
    lands directly on ``/attack`` would get the page script alone, without the sidebar. app.py
    marks each of its runs; a page run without that mark clears the old-mode flag and reruns,
    which then goes through app.py and st.navigation.
    """
    if st.session_state.get("_shell_run"):
        return
    from streamlit.runtime.pages_manager import PagesManager

    PagesManager.uses_pages_directory = False
    st.rerun()
