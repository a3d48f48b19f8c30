"""How a page lays itself out: lecture paths (what a path opens on, the rest one click away), the projector layout,
folded settings, the title with its link (not a page)."""
from __future__ import annotations

import streamlit as st

from lab_pages._resources import photo_source
from lab_pages._url import copy_link_button
from robust_core.lectures import FOCUS_OF_PAGE


def photos_not_here(page: str) -> None:
    """Stop a page that has no photo view with a message, when the sidebar's source is ImageNet photos."""
    if photo_source():
        st.title(page)
        st.info("**ImageNet photos** run on pretrained networks, on the Saliency, Attack and Class Visualization "
                "pages. "
                f"The {page} page works on the digit datasets: choose MNIST or Fashion-MNIST in the sidebar.",
                icon=":material/photo_library:")
        st.stop()


def title_with_link(title: str) -> None:
    """The page title with "Copy link to this view": every view keeps its state in the address, so it is a link."""
    heading, link = st.columns([3, 1], vertical_alignment="center")  # the button needs ~190 px at 1280×720
    heading.title(title)
    copy_link_button(link)


def png_config(file_name: str) -> dict:
    """Plotly chart config whose camera button saves the chart as ``file_name``.png at twice the size
    (in the browser: no server-side renderer needed)."""
    return {"toImageButtonOptions": {"format": "png", "filename": file_name, "scale": 2}, "displaylogo": False}


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


def lazy_settings_box(label: str, key: str, *, folded: bool | None = None) -> tuple[object, "KeptSettings"]:
    """``settings_box``'s container and the settings drawn in it: folded (a lecture path, a projector; or ``folded``),
    a closed expander whose widgets are not built at all until it is opened, their values kept meanwhile.

    A room opening a lecture path runs the page once per student, and the ~20 widgets of a folded settings box were
    most of each run's elements while nobody opened it."""
    folded = folded_controls() if folded is None else folded
    if not folded:
        return st.container(border=True), KeptSettings(key, drawn=True)
    box = st.expander(f":material/tune: {label}", expanded=False, key=key, on_change="rerun")
    return box, KeptSettings(key, drawn=bool(box.open))


class KeptSettings:
    """Widgets whose values outlive the runs that draw them: ``kept(st.number_input, key, default, label, ...)`` draws
    the widget when ``drawn`` (from its kept value, or ``default``) and returns its value; when not drawn it returns
    the kept value without building anything. (Streamlit drops a widget's state after a run that does not draw it.)

    Never pass ``value=``/``index=`` to a kept widget: its value comes from the session state, seeded here."""

    def __init__(self, name: str, *, drawn: bool):
        self.drawn = drawn
        self.kept: dict = st.session_state.setdefault(f"_kept_{name}", {})

    def __call__(self, widget, key: str, default, *args, **kwargs):
        if not self.drawn:
            return st.session_state[key] if key in st.session_state else self.kept.get(key, default)
        if key not in st.session_state:
            st.session_state[key] = self.kept.get(key, default)
        value = widget(*args, key=key, **kwargs)
        self.kept[key] = value
        return value

    def columns(self, spec, **kwargs):
        """``st.columns(spec)`` when drawn; else stand-ins whose widgets are never called (nothing is built)."""
        return st.columns(spec, **kwargs) if self.drawn else [st] * (spec if isinstance(spec, int) else len(spec))

    def expander(self, label: str, key: str) -> tuple[object, "KeptSettings"]:
        """A nested section of these settings, built only when drawn and opened (its own kept values)."""
        if not self.drawn:
            return _NOTHING, KeptSettings(key, drawn=False)
        box = st.expander(label, expanded=False, key=key, on_change="rerun")
        return box, KeptSettings(key, drawn=bool(box.open))


class _Nothing:
    """``with`` target of a section that is not drawn."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NOTHING = _Nothing()


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
                ' [data-testid="stMainBlockContainer"] { max-width: 100%; padding-left: 1.5rem;'
                ' padding-right: 1.5rem; }'
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
