"""The opening every analysis page shares (title, dataset, store, data, models), the models a page picks by
itself, and images one page opens on another (not a page)."""
from __future__ import annotations

import streamlit as st

from lab_pages._audience import in_lecture_mode
from lab_pages._layout import photos_not_here, title_with_link
from lab_pages._resources import current_dataset, get_dataset, get_store, photo_source


def analysis_page(title: str, *, networks_only: bool = True, photo_view=None):
    """The opening every analysis page shares: title, dataset, store, data and its models.

    Returns (dataset, store, data, entries); stops the page with a clear message when the data is
    missing or no model (network, with ``networks_only``) exists for the dataset. With the ImageNet photos source,
    runs ``photo_view()`` instead (or says the page is for digits) and stops.
    """
    if photo_source() and photo_view is not None:
        photo_view()
        st.stop()
    photos_not_here(title)
    title_with_link(title)
    dataset = current_dataset()
    store = get_store()
    data = get_dataset(dataset)
    if data is None:
        st.stop()
    entries = store.list(dataset)
    if networks_only:
        entries = [e for e in entries if e.meta["config"]["arch"] not in ("logreg", "knn")]
    if not entries:
        kind = "network" if networks_only else "model"
        st.info(f"No trained {kind} for this dataset yet: train one on the Train page first.", icon=":material/info:")
        st.stop()
    return dataset, store, data, entries


def model_labels(entries) -> dict[str, str]:
    """Model id -> picker label (:func:`robust_core.store.display_names`); in lecture mode a visitor's model is marked
    "(student)", so a student's look-alike never passes for the lecturer's or a shipped model."""
    from robust_core.store import display_names

    return display_names(entries, mark_students=in_lecture_mode())


def default_candidates(entries) -> list:
    """The models a page may pick for this browser by itself (a default, not the visitor's choice): in lecture mode
    the shipped ones, the lecturer's and this visitor's own, never another visitor's (one student's model must not
    become the room's baseline). All of them, in the order given, otherwise; all of them when none qualifies."""
    from lab_pages._audience import current_visitor
    from robust_core.access import trained_by_visitor

    if not in_lecture_mode():
        return list(entries)
    me = current_visitor().owner
    return [e for e in entries if not trained_by_visitor(e.meta) or e.meta.get("owner") == me] or list(entries)


def comparison_defaults(entries) -> list[str]:
    """The sidebar's model, then one PGD-trained and one GFA-trained model when the store has them (in lecture mode
    never another visitor's: :func:`default_candidates`)."""
    ids = [e.model_id for e in entries]
    candidates = default_candidates(entries)
    default = [st.session_state["model_id"]] if st.session_state.get("model_id") in ids else [candidates[0].model_id]
    for wanted in ("pgd_at", "gfa"):
        extra = next((e.model_id for e in candidates
                      if e.meta["config"]["method"] == wanted and e.model_id not in default), None)
        if extra:
            default.append(extra)
    return default


def keep_model_choice(key: str, labels: dict[str, str]) -> None:
    """Call before drawing the keyed model selectbox ``key`` over ``labels`` (model id -> label): it
    keeps the chosen model, and shows its new label, when labels change (a rename).

    Streamlit identifies a selectbox's choice by its label, in the browser and on the way back, and
    a keyed selectbox stays the same widget when its labels change. After a rename the browser goes
    on showing the old label (the server sends a value only when it changed one) and later sends that
    label back, which then names no model, or another model: the choice falls elsewhere. Reading the
    key before the widget decodes the browser's label with the labels it was drawn with; setting the
    key again makes the server send the new label.
    """
    drawn = st.session_state.get(f"_{key}_labels")
    current = st.session_state.get(key)
    if drawn is not None and current in labels and drawn.get(current) != labels[current]:
        st.session_state[key] = current
    st.session_state[f"_{key}_labels"] = dict(labels)


OPEN_IMAGE_KEY = "open_image"


SPLIT_LABELS = {"test": "test image", "validation": "validation image"}


def open_image(page: str, *, dataset: str, split: str, index: int, model_id: str | None = None) -> None:
    """Switch to ``page`` ("lab_pages/saliency.py" or "lab_pages/attack.py") with one image of ``split`` opened.

    The Confidence galleries call this from a button. ``model_id`` (a network) becomes the sidebar's
    model, so the page starts from the model whose confidence was being looked at.
    """
    st.session_state[OPEN_IMAGE_KEY] = {"page": page, "dataset": dataset, "split": split, "index": int(index),
                                        "new": True}
    if model_id is not None:
        st.session_state["select_model_id"] = model_id  # picked up by the sidebar on the next run
    st.switch_page(page)


def opened_image(page: str, dataset: str) -> dict | None:
    """The image another page asked ``page`` to open for ``dataset`` (see :func:`open_image`), or None.

    ``request["new"]`` is True on the first run after the switch only, so that a page sets its
    widgets once and the user can move away from the image afterwards.
    """
    request = st.session_state.get(OPEN_IMAGE_KEY)
    if not request or request["page"] != page or request["dataset"] != dataset:
        return None
    fresh = dict(request)
    request["new"] = False
    return fresh
