"""Streamlit helpers shared by the pages: cached resources and the sidebar state (not a page)."""
from __future__ import annotations

import os
import re

import plotly.graph_objects as go
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


IMAGENET = "imagenet"  # the sidebar's "ImageNet photos" source (pages/photo_views.py), beside the digit datasets


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


def analysis_page(title: str, *, networks_only: bool = True, photo_view=None):
    """The opening every analysis page shares: shell, title, dataset, store, data and its models.

    Returns (dataset, store, data, entries); stops the page with a clear message when the data is
    missing or no model (network, with ``networks_only``) exists for the dataset. With the ImageNet photos source,
    runs ``photo_view()`` instead (or says the page is for digits) and stops.
    """
    require_shell()
    if photo_source() and photo_view is not None:
        photo_view()
        st.stop()
    photos_not_here(title)
    heading, link = st.columns([3, 1], vertical_alignment="center")  # the button needs ~190 px at 1280×720
    heading.title(title)
    copy_link_button(link)  # the page keeps its state in the address: this view is a link
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
    """Switch to ``page`` ("pages/saliency.py" or "pages/attack.py") with one image of ``split`` opened.

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


# ---- state in the URL: any view is a link (lecture paths, "copy link to this view") ------------------------------
def url_value(name: str, choices, default):
    """The URL's ``?name=`` when it is one of ``choices`` (compared as text), else ``default``.

    Widgets take it as their default: a link opens the page in its state, and since every page writes its
    state back (:func:`set_url`), the address always describes the view on screen.
    """
    raw = st.query_params.get(name)
    if raw is None:
        return default
    return next((c for c in choices if str(c) == raw), default)


def url_list(name: str, choices, default: list) -> list:
    """The URL's ``?name=a,b`` items that are among ``choices`` (order kept), else ``default`` when none is."""
    raw = st.query_params.get(name)
    if raw is None:
        return default
    wanted = [c for part in raw.split(",") for c in choices if str(c) == part]
    return list(dict.fromkeys(wanted)) or default


def url_int(name: str, low: int, high: int, default: int) -> int:
    raw = st.query_params.get(name)
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        return default
    return value if low <= value <= high else default


def set_url(**values) -> None:
    """Write the page's state into the address (lists as a,b,c); only what changed, so no needless browser update."""
    written = st.session_state.setdefault("_url_written", {})
    for name, value in values.items():
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        written[name] = text
        if st.query_params.get(name) != text:
            st.query_params[name] = text


def _bind_url(key: str, name: str, read, valid) -> None:
    """Give the keyed widget ``key`` its value from the address when it has none yet (first draw) or when the address
    changed from outside (a link, a lecture card: a value this session did not write); else keep the widget's own
    value, reset by ``read`` when it is no longer valid (a deleted model).

    Why keyed widgets: a widget without a key is identified by its parameters, its default included, so a default
    taken from the address (which follows the widget) made every second change start a new widget, at the default."""
    raw = st.query_params.get(name)
    written = st.session_state.setdefault("_url_written", {})
    if key not in st.session_state or (raw is not None and raw != written.get(name)):
        st.session_state[key] = read()
        if raw is not None:
            written[name] = raw
    elif not valid(st.session_state[key]):
        st.session_state[key] = read()


def url_choice(key: str, name: str, choices, default) -> None:
    """Before a keyed selectbox/radio over ``choices``: its value from ``?name=`` (see :func:`_bind_url`)."""
    choices = list(choices)
    _bind_url(key, name, lambda: url_value(name, choices, default), lambda v: v in choices)


def url_choices(key: str, name: str, choices, default: list, *, limit: int | None = None) -> None:
    """Before a keyed multiselect over ``choices``: its value from ``?name=a,b`` (at most ``limit`` items)."""
    choices = list(choices)
    _bind_url(key, name, lambda: url_list(name, choices, [c for c in default if c in choices])[:limit],
              lambda v: all(c in choices for c in v) and (limit is None or len(v) <= limit))


def url_float(key: str, name: str, low: float, high: float, default: float) -> None:
    """Before a keyed float slider in [low, high]: its value from ``?name=``."""
    def read() -> float:
        try:
            value = float(st.query_params.get(name, default))
        except ValueError:
            return default
        return value if low <= value <= high else default
    _bind_url(key, name, read, lambda v: low <= v <= high)


def url_number(key: str, name: str, low: int, high: int, default: int) -> None:
    """Before a keyed integer number_input in [low, high]: its value from ``?name=``."""
    _bind_url(key, name, lambda: url_int(name, low, high, default), lambda v: low <= v <= high)


def copy_link_button(container=st) -> None:
    """A button that copies the address of the current view (the browser's own URL, state included)."""
    with container:
        # st.iframe embeds this fixed HTML (no user input in it) with the page's origin, so it can read the
        # address and use the clipboard. (st.components.v1.html, its predecessor, is deprecated.)
        embed = getattr(st, "iframe", None) or __import__("streamlit.components.v1", fromlist=["html"]).html
        embed(
            """<button id="copy" title="Copy the address of this view (its settings are in it)"
            style="font: 14px sans-serif; padding: 6px 12px; border: 1px solid #ccc; white-space: nowrap;
            border-radius: 8px; background: white; cursor: pointer">Copy link to this view</button>
            <script>
            const button = document.getElementById("copy");
            button.onclick = async () => {
              const url = window.parent.location.href;
              try { await navigator.clipboard.writeText(url); button.textContent = "Link copied"; }
              catch (e) { window.prompt("Copy this link:", url); }
            };
            </script>""", height=44)


_ERROR_DETAILS = st.get_option("client.showErrorDetails")  # as configured, read once per server process


def error_details_for_the_audience() -> None:
    """In lecture mode an uncaught error shows the room a generic message: no traceback, no file path, no code."""
    st.set_option("client.showErrorDetails", "none" if in_lecture_mode() else _ERROR_DETAILS)


def no_external_ip_lookup() -> None:
    """Never let the server ask the internet for its own address.

    Streamlit checks a cross-origin WebSocket's Origin against the machine's external IP, which it fetches from
    checkip.amazonaws.com (a blocking request, retried after every failure): any client sending a made-up Origin
    header would make the lecture server call out, and wait, again and again. An empty cached answer ends that; the
    same-origin connections of the room's browsers never needed it. (.streamlit/config.toml's server.address
    already stops the lookup of the headless start.)"""
    from streamlit import net_util

    if getattr(net_util, "_external_ip", "") is None:
        net_util._external_ip = ""


# ---- lecture (audience) mode: see robust_core.access --------------------------------------------------------------
def in_lecture_mode() -> bool:
    from robust_core.access import lecture_mode

    return lecture_mode()


VISITOR_COOKIE = "robust_lab_visitor"


def current_visitor():
    """This browser as a :class:`robust_core.access.Visitor`: the public id of its secret token, and whether it
    entered the lecturer key. The secret is made once and kept in a cookie (see :func:`remember_visitor`), so a
    student who reloads the page, or opens a second tab, is still the owner of the models they trained."""
    import re
    import uuid

    from robust_core.access import Visitor, visitor_id

    secret = st.session_state.get("_owner_token")
    if secret is None:
        from_cookie = st.context.cookies.get(VISITOR_COOKIE)
        from_cookie = from_cookie if isinstance(from_cookie, str) else ""  # (AppTest has no real cookies)
        secret = from_cookie if re.fullmatch(r"[0-9a-f]{32}", from_cookie) else uuid.uuid4().hex
        st.session_state["_owner_token"] = secret
        st.session_state["_owner_cookie_saved"] = secret == from_cookie
    return Visitor(owner=visitor_id(secret), lecturer=bool(st.session_state.get("_lecturer")))


def remember_visitor() -> None:
    """Once per new browser: store the visitor's secret token in a cookie of this site (30 days, this site only), from a
    tiny embedded script: Streamlit reads cookies but cannot set them."""
    current_visitor()
    if st.session_state.get("_owner_cookie_saved"):
        return
    st.session_state["_owner_cookie_saved"] = True
    secret = st.session_state["_owner_token"]  # 32 hex digits (made above), nothing a visitor typed
    embed = getattr(st, "iframe", None) or __import__("streamlit.components.v1", fromlist=["html"]).html
    # Secure once served over HTTPS (a lecture room's reverse proxy): the browser then never sends the token in clear,
    # not even in the plain-HTTP request that the proxy answers with a redirect.
    embed(f"""<script>window.parent.document.cookie = "{VISITOR_COOKIE}={secret}; path=/; max-age=2592000; SameSite=Strict"
          + (window.parent.location.protocol === "https:" ? "; Secure" : "");
          </script>""", height=1)


@st.cache_resource(show_spinner=False)
def lecturer_key_guard():
    """The server's one count of wrong lecturer keys (robust_core.lecturer_key): shared by every session, so a
    visitor cannot reset it with a new tab or a new cookie."""
    from robust_core.lecturer_key import LecturerKeyGuard

    return LecturerKeyGuard()


def _try_lecturer_key() -> None:
    """One attempt per entered value, made before the key field is drawn: the value is then cleared, so a rerun
    does not try it again (and count it again) and the typed key does not stay in the page."""
    key = st.session_state.get("_lecturer_key_input") or ""
    st.session_state["_lecturer_key_input"] = ""
    if not key:
        return
    verdict = lecturer_key_guard().attempt(key, visitor=current_visitor().owner)
    st.session_state["_lecturer"] = verdict.accepted
    st.session_state["_lecturer_key_message"] = verdict.message


def lecturer_sidebar() -> None:
    """In lecture mode: the mode's badge and the lecturer's key field (in the sidebar), throttled."""
    if not in_lecture_mode():
        return
    if st.session_state.get("_lecturer"):
        st.caption(":material/co_present: **Lecture mode** · you are the lecturer")
        return
    st.caption(":material/co_present: **Lecture mode**: shipped and the lecturer's models are read-only; "
               "you can train small models of your own.")
    _try_lecturer_key()
    if st.session_state.get("_lecturer"):
        st.rerun()
    with st.expander("Lecturer", expanded=bool(st.session_state.get("_lecturer_key_message"))):
        st.text_input("Lecturer key", type="password", key="_lecturer_key_input")
        if message := st.session_state.pop("_lecturer_key_message", None):
            st.error(message)


# ---- heavy work through one job runner per server (robust_core.jobs) ------------------------------------------------
@st.cache_resource(show_spinner=False)
def job_runner():
    """The server's one job runner: heavy work of every session waits in its queue, identical requests run once.

    Two lanes, one worker each (2 cores): "long" for training and first-time attack computations (minutes: one at a
    time, a second would only halve the first's speed), "short" for morphs (seconds), so a student's morph never
    waits behind a classmate's training while a room's simultaneous morphs run one after the other."""
    from robust_core.jobs import JobRunner

    return JobRunner(workers={"long": 1, "short": 1})


def visitor_work_error(work) -> str | None:
    """Why this browser may not ask for ``work`` (a :class:`robust_core.access.Work`), or None: for the widgets,
    which say it before the button is pressed; :func:`submit_job` checks it again."""
    from robust_core.access import work_error

    return work_error(work, lecture=in_lecture_mode(), lecturer=current_visitor().lecturer)


def submit_job(key: str, fn, *, label: str, lane: str = "long", work=None, container=None):
    """Queue ``fn`` in the server's runner for this browser (or join the identical job), or show why not in
    ``container`` (default: the page) and return None.

    Every page queues its work here, so the limits hold whatever the browser sent (a disabled button can still be
    "clicked" by a forged request): ``work`` (a :class:`robust_core.access.Work`) is checked against the visitors'
    limits and the machine's memory before anything is queued, and in lecture mode the runner holds visitors, not
    the lecturer, to its quotas (:class:`robust_core.jobs.QuotaExceeded`)."""
    from robust_core.jobs import QuotaExceeded

    container = st if container is None else container
    visitor, lecture = current_visitor(), in_lecture_mode()
    problem = visitor_work_error(work) if work is not None else None
    if problem:
        container.warning(problem, icon=":material/block:")
        return None
    try:
        return job_runner().submit(key, fn, owner=visitor.owner, label=label, lane=lane,
                                   limited=lecture and not visitor.lecturer)
    except QuotaExceeded as exc:
        container.warning(str(exc), icon=":material/hourglass:")
    except RuntimeError as exc:  # the lane's queue is full, for everybody
        container.error(f"Not queued: {exc}.")
    return None


def progress_line(label: str, fraction: float, elapsed: float) -> str:
    """Progress text with an ETA only once it means something: a few seconds and percent in (the attacks' progress
    counts work against its worst case, so the ETA errs long)."""
    text = f"{label}: {100 * fraction:.0f}% · elapsed {elapsed:.0f} s"
    if 0.03 <= fraction < 1 and elapsed >= 3:
        text += f" · about {elapsed / fraction - elapsed:.0f} s left"
    return text


def _job_line(job, runner) -> str:
    import time

    if job.status == "queued":
        return f"**{plain(job.label)}**: waiting, position {runner.position(job)} in the queue"
    line = progress_line(f"**{plain(job.label)}**", job.progress, time.monotonic() - (job.started or time.monotonic()))
    return f"{line} · {plain(job.message)}" if job.message else line


@st.fragment(run_every=1.0)
def job_status(job_keys: list[str], *, section: str) -> None:
    """Progress of the jobs ``job_keys`` (position in the queue, progress, Cancel for the requester), redrawn every
    second on its own; the whole page reruns once they have all finished, to show their results.

    ``section`` names the part of the page that draws it: one job can be shown by two sections at once (the Attack
    page's curves and its comparison both wait on PGD of the same model), and each needs its own Cancel button."""
    runner, visitor = job_runner(), current_visitor()
    jobs = [j for j in (runner.get(k) for k in job_keys) if j is not None]
    if all(j.status in ("done", "failed", "cancelled") for j in jobs):
        st.rerun(scope="app")
    for job in jobs:
        if job.status not in ("queued", "running"):
            continue
        line, cancel = st.columns([5, 1], vertical_alignment="center")
        line.progress(job.progress, text=_job_line(job, runner))
        if visitor.owner in job.owners:
            cancel.button("Cancel", key=f"cancel_{section}_{job.key}", icon=":material/stop:", on_click=runner.cancel,
                          args=(job, visitor.owner), help="Withdraw your request; nothing is saved if nobody else wants it.")
        else:
            cancel.caption("requested by another visitor")


# ---- presentation (projector) option ----------------------------------------------------------------------------
PRESENTATION = "presentation"


def presentation_sidebar() -> None:
    """The sidebar's projector switch, and, when on, larger text for the whole page (rem-based sizes follow the root)."""
    st.toggle("Presentation (projector)", key=PRESENTATION,
              help="Larger text, thicker lines in the figures: legible on a 1280×720 projector.")
    if st.session_state.get(PRESENTATION):
        st.html("<style>html { font-size: 19px; }</style>")


def shared_figure(fig):
    """``fig`` as a figure shared read-only by every session (one built in ``st.cache_resource``).

    ``st.plotly_chart`` calls ``fig.to_dict()`` (a deep copy) and then serialises the copy at every run. For the
    ε-slider figure (~2 MB of frames) the copy was ~12 ms of the server's one interpreter per student's run; here
    it is made once and the same dict is handed out afterwards. Never change the figure once shared.
    """
    return SharedFigure(fig.to_dict())


class SharedFigure(go.Figure):
    """A figure whose ``to_dict()`` is the dict it was built from, not a new deep copy (see shared_figure)."""

    def __init__(self, frozen: dict):
        super().__init__(frozen, _validate=False)
        self._frozen = frozen

    def to_dict(self):
        return self._frozen


def show_chart(container, fig, **kwargs):
    """``container.plotly_chart(fig, **kwargs)``, in the projector style when the presentation switch is on."""
    from robust_core.plots import projector_style

    return container.plotly_chart(projector_style(fig) if st.session_state.get(PRESENTATION) else fig, **kwargs)
