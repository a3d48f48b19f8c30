"""Streamlit helpers shared by the pages: cached resources and the sidebar state (not a page)."""
from __future__ import annotations

import os
import re

import streamlit as st

from lab_pages._url import copy_link_button
from robust_core.data import DATASETS, DataNotFoundError, load_dataset, resolve_data_dir
from robust_core.lectures import FOCUS_OF_PAGE
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


# ASCII punctuation: CommonMark lets every one be backslash-escaped, and each may start Markdown (links, images,
# emphasis, code, headings, lists, tables, HTML, entities, Streamlit's :color[...] directives, $math$).
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# GitHub-flavoured Markdown also turns URLs and e-mail addresses in plain text into links, escaped or not (it reads
# the text after the escapes are resolved): a word joiner (U+2060, invisible) after "http"/"www" and before "@"
# keeps them text.
_AUTOLINK_STARTS = re.compile(r"(?i)(https?|www|ftp|mailto|xmpp)(?=[:.])")


def plain(text) -> str:
    """``text`` (a user-supplied string: a model name, a job label, a file name, an error about them) for an element
    that renders Markdown (st.markdown, st.info/warning/error/success, st.caption, st.write, widget labels and
    help, progress texts, metric labels, ...): shown exactly as written, never as a link, an image, emphasis or HTML.
    A model named ``![t](http://host/track.png)`` must not make every visitor's browser fetch that address."""
    text = " ".join(str(text).split())  # one line: a line break could start a heading or a list
    text = _AUTOLINK_STARTS.sub("\\1\u2060", text).replace("@", "\u2060@")
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


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



def digit_canvas(container, *, key: str):
    """A drawing canvas (brush width, eraser, clear) and the 28x28 MNIST-style input made from it.

    Returns the (1, 1, 28, 28) tensor, or None (with a hint) while the canvas is empty. A test can
    skip the canvas by putting an image array in ``st.session_state[key + "_image"]``.
    """
    from robust_core.digits import NotADigitImage, mnist_style

    injected = st.session_state.get(f"{key}_image")
    c1, c2 = container.columns([3, 2])
    width = c2.slider("Brush width", 8, 40, 20, key=f"{key}_width")
    eraser = c2.toggle("Eraser", key=f"{key}_eraser")
    c2.caption("Clear or undo with the toolbar above the canvas (it shows when the mouse is over it).")
    image = injected
    if image is None:
        from streamlit_drawable_canvas import st_canvas

        with c1:
            # The canvas's toolbar (undo, redo, clear) appears on hover 2.65 rem above the canvas: leave it room, or
            # it covers the widgets above.
            st.html('<div style="height: 2.4rem"></div>')
            result = st_canvas(stroke_width=width, stroke_color="#000000" if eraser else "#FFFFFF",
                               background_color="#000000", height=280, width=280, drawing_mode="freedraw",
                               return_image_data=True, key=f"{key}_canvas")
        image = None if result is None else result.image_data
    if image is None:
        c2.info("Draw a digit with the mouse.", icon=":material/draw:")
        return None
    try:
        x = mnist_style(image)
    except NotADigitImage:
        c2.info("Draw a digit with the mouse.", icon=":material/draw:")
        return None
    c2.image(x[0, 0].numpy(), caption="what the model sees (28×28)", width=112, clamp=True)
    return x


def photos_not_here(page: str) -> None:
    """Stop a page that has no photo view with a message, when the sidebar's source is ImageNet photos."""
    if photo_source():
        st.title(page)
        st.info("**ImageNet photos** run on pretrained networks, on the Saliency, Attack and Class Visualization pages. "
                f"The {page} page works on the digit datasets: choose MNIST or Fashion-MNIST in the sidebar.",
                icon=":material/photo_library:")
        st.stop()


def title_with_link(title: str) -> None:
    """The page title with "Copy link to this view": every view keeps its state in the address, so it is a link."""
    heading, link = st.columns([3, 1], vertical_alignment="center")  # the button needs ~190 px at 1280×720
    heading.title(title)
    copy_link_button(link)


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


def in_lecture_mode() -> bool:
    from robust_core.access import lecture_mode

    return lecture_mode()


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
    st.session_state[OPEN_IMAGE_KEY] = {"page": page, "dataset": dataset, "split": split, "index": int(index), "new": True}
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


def png_config(file_name: str) -> dict:
    """Plotly chart config whose camera button saves the chart as ``file_name``.png at twice the size
    (in the browser: no server-side renderer needed)."""
    return {"toImageButtonOptions": {"format": "png", "filename": file_name, "scale": 2}, "displaylogo": False}


# ---- presentation (projector) option and lecture views --------------------------------------------------------
PRESENTATION = "presentation"
# What a lecture path opens on (its card's promise), as ``?focus=`` in its address: the page draws that part first,
# on the first 720 px of a projector, and folds its controls away.
FOCUS_VIEWS = tuple(sorted({view for views in FOCUS_OF_PAGE.values() for view in views}))


def lecture_focus() -> str | None:
    """The part of the page a lecture path opened on (``?focus=``), or None on a page opened for work."""
    value = st.query_params.get("focus")
    return value if value in FOCUS_VIEWS else None


def presenting() -> bool:
    """Whether the projector layout is on (the sidebar's switch, or ``?present=1`` in a shared link)."""
    return bool(st.session_state.get(PRESENTATION))


def folded_controls() -> bool:
    """Controls are folded away on a projector and on a lecture path: the room looks at the result."""
    return presenting() or lecture_focus() is not None


def settings_box(label: str = "Settings", container=None):
    """The container of a section's controls: a bordered box on a page opened for work, a closed expander on a
    lecture path or a projector (one line instead of a screen of widgets). ``container``: where (default the page)."""
    container = st if container is None else container
    if folded_controls():
        return container.expander(f":material/tune: {label}", expanded=False)
    return container.container(border=True)


def settings_row(count: int):
    """``count`` places side by side for folded settings (one line for all), or the page itself ``count`` times."""
    return st.columns(count) if folded_controls() else [st] * count


def rest_shown(page: str) -> bool:
    """Whether ``page`` shows everything: off a lecture path, or once its "Show the rest" button was clicked."""
    return lecture_focus() is None or bool(st.session_state.get(f"_{page}_rest_shown"))


def rest_of_page(page: str) -> bool:
    """Whether the page goes on past its lecture path's own section: always off a path; on one, once asked.

    A room opening a path runs the page once per student, and the sections below the path's promise (forms, tables
    and figures of their own) were most of that work while nobody looked at them: they wait behind one button."""
    if rest_shown(page):
        return True
    if st.button("Show the rest of the page", key=f"{page}_rest", icon=":material/expand_more:", type="tertiary",
                 help="This lecture path opens on its own section; the page's other sections are one click away."):
        st.session_state[f"_{page}_rest_shown"] = True
        st.rerun()  # from the top: sections above the button that waited for it are drawn too
    return False


def focus_section(name: str, top):
    """Where the section ``name`` draws: ``top`` (a container made under the title) when the lecture path opened on
    it, else a container in the page's own order."""
    return top if lecture_focus() == name else st.container()


def presentation_sidebar() -> None:
    """The sidebar's projector switch (also ``?present=1``), and the page styles: compact margins always; when on,
    the projector layout: larger text, the full width, the sidebar closed (app.py), controls folded."""
    if PRESENTATION not in st.session_state:
        st.session_state[PRESENTATION] = st.query_params.get("present") == "1"
    st.toggle("Projector", key=PRESENTATION,
              help="Presentation layout for a 1280×720 projector: larger text and lines, controls folded away, "
                   "the sidebar closed. In a link: ?present=1.")
    if "focus" in st.query_params and lecture_focus() is None:
        del st.query_params["focus"]  # (an unknown value: not carried on by "Copy link")
    if presenting():
        st.query_params["present"] = "1"
    elif "present" in st.query_params:
        del st.query_params["present"]
    # Streamlit's main column starts 6rem down; a projector's first screen is worth more than that margin.
    # (3.75rem: Streamlit's fixed header, 60 px, covers the first 3.75rem.)
    css = '[data-testid="stMainBlockContainer"] { padding-top: 3.75rem; padding-bottom: 2rem; }'
    if folded_controls():
        css += ' [data-testid="stMainBlockContainer"] h1 { font-size: 2rem; padding: 0.25rem 0; }'
    if presenting():
        css += (" html { font-size: 18px; }"
                ' [data-testid="stMainBlockContainer"] { max-width: 100%; padding-left: 1.5rem; padding-right: 1.5rem; }'
                ' [data-testid="stCaptionContainer"] { font-size: 0.95rem; }')
    st.html(f"<style>{css}</style>")


def sidebar_state() -> str:
    """app.py's initial sidebar: closed on a projector or a lecture path (300 px of a 1280 px screen), else open."""
    projector = st.query_params.get("present") == "1" or st.session_state.get(PRESENTATION)
    return "collapsed" if projector or lecture_focus() is not None else "auto"


def show_chart(container, fig, **kwargs):
    """``container.plotly_chart(fig, **kwargs)``, in the projector style when the presentation switch is on."""
    from robust_core.plots import projector_style

    if getattr(fig, "screen_styled", False):  # lab_pages._outputs.screen_figure: styled for this screen once, shared
        return container.plotly_chart(fig, **kwargs)
    return container.plotly_chart(projector_style(fig) if presenting() else fig, **kwargs)
