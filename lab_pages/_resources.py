"""The pages' shared resources, one per server process: the model store (shipped models installed), the models it
loads, and the datasets in memory, each with the page's message when it is missing or damaged (not a page)."""
from __future__ import annotations

import os

import streamlit as st

from lab_pages._audience import in_lecture_mode
from lab_pages._text import plain
from robust_core.data import DATASETS, DataNotFoundError, load_dataset, resolve_data_dir
from robust_core.shipped import install_shipped
from robust_core.store import ModelStore, resolve_store_dir


# "0" turns off installing the shipped models (tests do, to start from an empty store).
SHIPPED_ENV = "ROBUST_SHIPPED_MODELS"


_install_errors: list[str] = []


@st.cache_resource(show_spinner="Installing the shipped models…")
def _store(root: str) -> ModelStore:
    store = ModelStore(root)
    # Every page run of every student lists the store several times: a listing is reused for a second while nothing
    # was added or removed (an entry edited in place by another replica shows a second later at most).
    store.reuse_listing_s = 1.0
    if os.environ.get(SHIPPED_ENV, "1") != "0":
        # Once per server process and store: models shipped in assets/ join the store, so every page
        # has models to show before anyone trains. A damaged file is reported, never fatal.
        for shipped, _, status in install_shipped(store):
            if status.startswith("error"):
                _install_errors.append(f"{shipped.file.name}: {status}")
        # Their evaluation results too (assets/evaluations): a lecture path's curves are there at once. Only
        # results made for these very weights and the current search are installed; the rest is recomputed.
        from robust_core.precomputed import install_precomputed

        for name, status in install_precomputed(store):
            if status.startswith("error"):
                _install_errors.append(f"evaluation {name}: {status}")
    return store


def get_store(*, report: bool = True) -> ModelStore:
    """One store per folder and server process, so its in-memory model cache is shared by every session.

    With ``report`` (the page's own call: once per page, not in the sidebar, a callback or a cached function, whose
    elements would repeat), the page first says what could not be installed and which entries are damaged."""
    store = _store(str(resolve_store_dir()))
    if report:
        for message in _install_errors:
            st.warning(f"A shipped model could not be installed: {plain(message)}")
        damaged = store.damaged()
        if damaged:
            st.warning(damaged_store_message(damaged, lecture=in_lecture_mode()), icon=":material/broken_image:")
    return store


def load_model(model_id: str, *, device=None):
    """``get_store().load(model_id)`` for a page (in its own script thread, a cached function's included): a model
    whose files do not load stops the page with a message naming it, not a traceback. The store sets such a model
    aside from then on (:meth:`ModelStore.damaged`), so the page works again, with the other models, once reopened."""
    from robust_core.store import InvalidCheckpointError

    try:
        return get_store(report=False).load(model_id, device=device)
    except InvalidCheckpointError as exc:
        st.error(f"{plain(exc)} The pages no longer offer it: open the page again to go on with the other models.",
                 icon=":material/broken_image:")
        st.stop()


DAMAGED_SHOWN = 5  # damaged entries named in a page's warning; the Models page lists them all


def damaged_store_message(damaged, *, lecture: bool) -> str:
    """The page-wide warning about the store's damaged entries (:meth:`ModelStore.damaged`): which entry, why, and how
    to remove it. What comes from the files (folder names, names, reasons quoting content) is shown as plain text, and
    the folder's path only outside lecture mode: visitors never see the server's paths."""
    count = len(damaged)
    heading = (f"**{'A damaged entry' if count == 1 else f'{count} damaged entries'} of the model store "
               f"{'was' if count == 1 else 'were'} set aside**: the pages show the other models; nothing was deleted.")
    items = []
    for entry in damaged[:DAMAGED_SHOWN]:
        named = f" “{plain(entry.name)}”" if entry.name else ""
        where = "" if lecture else f" Folder: {plain(entry.path)}"
        items.append(f"- {plain(entry.dataset)} / {plain(entry.folder)}{named}: {plain(entry.reason)}.{where}")
    if count > DAMAGED_SHOWN:
        items.append(f"- and {count - DAMAGED_SHOWN} more, listed on the Models page.")
    remedy = ("The lecturer can remove damaged entries on the Models page." if lecture
              else "To remove one, use Remove on the Models page, or delete its folder.")
    return "\n\n".join([heading, "\n".join(items), remedy])


@st.cache_resource(show_spinner="Loading the dataset into memory…")
def _dataset(name: str, root: str, download: bool | None = None):
    return load_dataset(name, root, download=download)


def get_dataset(name: str):
    """The dataset's splits, or None after showing a clear error in the page.

    In lecture mode only the lecturer's visit may download a missing dataset (a visitor's would make the server fetch
    ~170 MB from the internet on a whim), and a visitor's message names no folder of the server."""
    from lab_pages._audience import current_visitor

    visitor_in_lecture = in_lecture_mode() and not current_visitor().lecturer
    try:
        root = str(resolve_data_dir())
        return _dataset(name, root, False) if visitor_in_lecture else _dataset(name, root)
    except DataNotFoundError as exc:
        if visitor_in_lecture:
            st.error(f"**{DATASETS[name].title} is not available on this server.** The lecturer can make it available "
                     "(open the page once with the lecturer key, online), or choose another dataset in the sidebar.")
        else:
            st.error(f"**{DATASETS[name].title} is not available.**\n\n```\n{exc}\n```")
        return None


def current_dataset() -> str:
    return st.session_state.get("dataset", "mnist")


IMAGENET = "imagenet"  # the sidebar's "ImageNet photos" source (lab_pages/photo_views.py), beside the digit datasets


def photo_source() -> bool:
    return current_dataset() == IMAGENET
