"""The drawing canvas a student draws a digit on (not a page)."""
from __future__ import annotations

import numpy as np
import streamlit as st

from robust_core.challenges.scoring import MAX_CANVAS_SIDE

# What the browser's canvas may send: a PNG of the strokes, at most MAX_CANVAS_SIDE a side (a 320-pixel canvas at 4
# device pixels per CSS pixel, with room to spare) and this many bytes (strokes compress far below). Anything else is
# a forged message: a 363 KB PNG that declares 9,400 x 9,400 pixels took 3 GB and 12 s of the server to decode.
MAX_CANVAS_BYTES = 4 * 2**20
UNREADABLE = "The canvas sent something unreadable: clear it (the bin above it) and draw again."


def drawn_canvas(**canvas_args) -> np.ndarray | None:
    """``st_canvas(**canvas_args)``'s strokes as an (H, W, 4) uint8 array, or None while nothing is drawn: its PNG is
    checked from its header (format, byte size, side, pixels: robust_core.image_files) before a pixel is decoded, and
    a value the component cannot read (a forged message) is treated as an empty canvas with a message, never an
    error box."""
    from streamlit_drawable_canvas import st_canvas

    from lab_pages._text import plain
    from robust_core.image_files import ImageFileError, open_image

    try:
        result = st_canvas(return_image_data=True, **canvas_args)
        data = None if result is None else result.image_bytes
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):  # (the component parses the browser's value)
        st.warning(UNREADABLE, icon=":material/draw:")
        return None
    if not data:
        return None
    try:
        image = open_image(data, max_bytes=MAX_CANVAS_BYTES, max_pixels=MAX_CANVAS_SIDE**2, max_side=MAX_CANVAS_SIDE,
                           formats=("PNG",), wanted="a drawing from the canvas")
    except ImageFileError as exc:
        st.warning(f"{UNREADABLE} ({plain(exc)})", icon=":material/draw:")
        return None
    return np.asarray(image.convert("RGBA"))


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
        with c1:
            # The canvas's toolbar (undo, redo, clear) appears on hover 2.65 rem above the canvas: leave it room, or
            # it covers the widgets above.
            st.html('<div style="height: 2.4rem"></div>')
            image = drawn_canvas(stroke_width=width, stroke_color="#000000" if eraser else "#FFFFFF",
                                 background_color="#000000", height=280, width=280, drawing_mode="freedraw",
                                 key=f"{key}_canvas")
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
