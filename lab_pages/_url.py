"""State in the address: any view of a page is a link (lecture paths, "Copy link to this view")."""
from __future__ import annotations

import streamlit as st

SHELL_PARAMS = ("present", "focus")  # the page shell's parameters (lab_pages/_layout.py), on every page's link


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


def url_state(key: str, name: str, read, valid) -> None:
    """Before a keyed widget whose value is not one of the shapes below: its value from ``?name=`` through ``read()``
    (called when the address gives it one), kept while ``valid(value)`` (see :func:`_bind_url`)."""
    _bind_url(key, name, read, valid)


def drop_params(*, keep) -> None:
    """Remove from the address every parameter but ``keep`` and the shell's own (presentation mode, a lecture path's
    focus): a view that replaces another (the sidebar's source switched from digits to photos) leaves none of the
    other view's state in its link."""
    for name in [n for n in st.query_params if n not in keep and n not in SHELL_PARAMS]:
        del st.query_params[name]


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
