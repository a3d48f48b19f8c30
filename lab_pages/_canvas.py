"""The drawing canvas a student draws a digit on (not a page)."""
from __future__ import annotations

import streamlit as st


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
