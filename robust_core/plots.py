"""Plotly figures that the pages show, callable from Python as well (no Streamlit here)."""
from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go
from plotly.subplots import make_subplots

def plotly_text(text) -> str:
    """``text`` (a model name, a label made of names) for a figure's text: Plotly reads a subset of HTML in names,
    titles and annotations (``<a href>`` links, ``<span style>``...) and entities, so a user-supplied string goes in
    with ``&``, ``<`` and ``>`` escaped, and ``%`` too (hover templates substitute ``%{...}``): shown as written."""
    import html

    return html.escape(str(text), quote=False).replace("%", "&#37;")


PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]


def training_curves_figure(histories: Mapping[str, Mapping], *, height: int = 360) -> go.Figure:
    """Loss (left) and accuracy (right) against epochs for one or several training histories.

    Each history may hold ``batches`` (fractional epoch, running train loss, running train acc)
    and per-epoch ``epoch``, ``val_loss``, ``val_acc``. With one history, train and validation
    are shown in two colours; with several, one colour per model, validation solid, train dotted.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss (cross-entropy)", "Accuracy"), horizontal_spacing=0.1)
    single = len(histories) == 1
    for i, (name, h) in enumerate(histories.items()):
        colour = PALETTE[i % len(PALETTE)]
        batches = h.get("batches") or []
        if batches:
            x = [b[0] for b in batches]
            train_style = dict(color=PALETTE[0] if single else colour, width=1.5, dash="solid" if single else "dot")
            label = "train" if single else f"{plotly_text(name)} (train)"
            fig.add_trace(go.Scatter(x=x, y=[b[1] for b in batches], mode="lines", name=label, legendgroup=label,
                                     line=train_style), row=1, col=1)
            fig.add_trace(go.Scatter(x=x, y=[b[2] for b in batches], mode="lines", name=label, legendgroup=label,
                                     line=train_style, showlegend=False), row=1, col=2)
        if h.get("epoch"):
            val_colour = PALETTE[1] if single else colour
            label = "validation" if single else plotly_text(name)
            marker = dict(color=val_colour, size=8)
            fig.add_trace(go.Scatter(x=h["epoch"], y=h["val_loss"], mode="lines+markers", name=label, legendgroup=label,
                                     line=dict(color=val_colour, width=2.5), marker=marker), row=1, col=1)
            fig.add_trace(go.Scatter(x=h["epoch"], y=h["val_acc"], mode="lines+markers", name=label, legendgroup=label,
                                     line=dict(color=val_colour, width=2.5), marker=marker, showlegend=False),
                          row=1, col=2)
    fig.update_xaxes(title_text="epoch", rangemode="tozero")
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(tickformat=".1%", row=1, col=2)
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25),
                      template="plotly_white")
    return fig


GALLERY_SCALE = 1  # PNG pixels per image pixel: the browser enlarges them unsmoothed (go.Image zsmooth=False)
GALLERY_GAP = 2  # image pixels of white between two digits in a strip
DIVERGING_LEVELS = 255  # colours of a perturbation strip's blue-white-red map (its palette's last entry: the gaps)


def _rdbu(values):
    """Diverging colours for values in [0, 1]: blue (0) -> white (0.5) -> red (1), as uint8 RGB."""
    import numpy as np

    blue, white, red = np.array([33, 102, 172.0]), np.array([247, 247, 247.0]), np.array([178, 24, 43.0])
    v = np.clip(values, 0, 1)[..., None]
    low = blue + (white - blue) * (v / 0.5)
    high = white + (red - white) * ((v - 0.5) / 0.5)
    return np.where(v < 0.5, low, high).round().astype(np.uint8)


def image_strip(images, *, diverging: bool = False, scale: int = GALLERY_SCALE):
    """K images (K, H, W) in [0, 1] side by side as one PIL image (grey, or blue-white-red for signed
    perturbations in [0, 1] around 0.5), ``GALLERY_GAP`` image pixels apart, upscaled ``scale`` times
    without smoothing so each pixel stays a sharp square. Colour images (K, H, W, 3) give an RGB strip."""
    import numpy as np
    from PIL import Image

    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:  # colour photos: white gaps, no diverging map
        k, h, w, _ = images.shape
        strip = np.ones((h, k * w + (k - 1) * GALLERY_GAP, 3), dtype=np.float32)
        for c in range(k):
            strip[:, c * (w + GALLERY_GAP) : c * (w + GALLERY_GAP) + w] = images[c]
        pixels = (np.clip(strip, 0, 1) * 255).round().astype(np.uint8)
        return Image.fromarray(pixels).resize((strip.shape[1] * scale, h * scale), Image.NEAREST)
    k, h, w = images.shape
    fill = 0.5 if diverging else 1.0
    strip = np.full((h, k * w + (k - 1) * GALLERY_GAP), fill, dtype=np.float32)
    for c in range(k):
        strip[:, c * (w + GALLERY_GAP) : c * (w + GALLERY_GAP) + w] = images[c]
    if not diverging:
        pixels = (np.clip(strip, 0, 1) * 255).round().astype(np.uint8)
        return Image.fromarray(pixels).resize((strip.shape[1] * scale, h * scale), Image.NEAREST)
    # One byte a pixel: an index into the diverging map's 255 colours, and 255 for the gaps between digits (white,
    # apart from zero perturbation's light grey). An RGB strip was three bytes a pixel: the ε-slider figure carries
    # 41 frames of these per model, and every student's view sends them.
    index = (np.clip(strip, 0, 1) * (DIVERGING_LEVELS - 1)).round().astype(np.uint8)
    for c in range(k - 1):
        index[:, c * (w + GALLERY_GAP) + w : (c + 1) * (w + GALLERY_GAP)] = DIVERGING_LEVELS
    picture = Image.fromarray(index, mode="P")
    palette = _rdbu(np.linspace(0, 1, DIVERGING_LEVELS)).reshape(-1).tolist() + [255, 255, 255]
    picture.putpalette(palette)
    return picture.resize((strip.shape[1] * scale, h * scale), Image.NEAREST)


def image_strip_png(images, *, diverging: bool = False, scale: int = GALLERY_SCALE, compress_level: int = 1) -> bytes:
    """:func:`image_strip` encoded as PNG."""
    import io

    buffer = io.BytesIO()
    image_strip(images, diverging=diverging, scale=scale).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def image_strip_uri(images, *, diverging: bool = False) -> str:
    """:func:`image_strip_png` as a data URI for ``go.Image``. Compressed hard (level 9): a figure is built once per
    server and sent to every student's view, 41 frames of strips per model."""
    import base64

    png = image_strip_png(images, diverging=diverging, compress_level=9)
    return "data:image/png;base64," + base64.b64encode(png).decode()


def eps_slider_figure(
    eps_frames,
    curves: Mapping[str, list[float]],
    *,
    norm: str = "linf",
    gallery: Mapping | None = None,
    galleries: list[Mapping] | None = None,
    class_names=None,
    height: int | None = None,
    projector: bool = False,
) -> go.Figure:
    """Accuracy against eps with a slider that runs entirely in the browser.

    ``curves`` gives, per model, the accuracy at each eps of ``eps_frames`` (from minimal-eps
    lookups, so a fine grid is free). Each slider position is a precomputed Plotly frame: the
    markers on the curves, the accuracy in the title and, with galleries, the adversarial
    images, their amplified perturbation and predicted labels follow the handle while it is
    dragged, with no round trip to the server. Each gallery row is one PNG per frame (a few kB),
    not a heatmap per digit: the figure stays light enough to send on every rerun.

    ``galleries``: one per model, shown side by side with the curves as a block of two rows (the
    adversarial images with their predicted class, then the perturbation), all moved by the one
    slider, so that several models' digits can be compared at the same eps. Each is
    {"clean": (K, H, W) array in [0, 1], "adversarial": (F, K, H, W), "labels": (K,),
    "predictions": (F, K), "confidences": (F, K), "model": name}, the same K images for every
    model. ``gallery``: a single one (the same as ``galleries=[gallery]``).

    ``projector``: laid out for a 1280x720 projector (larger title, axes, legend and labels, thicker lines), in
    every frame: :func:`projector_style` scales the layout it is given, not the frames the slider swaps in, which
    then ran the gallery's enlarged labels together. ``height`` (px): e.g. what is left of the first screen.
    """
    import numpy as np

    eps_frames = [float(e) for e in eps_frames]
    # Font sizes (px) and line width: a laptop's, or a projector's (read from the back of a room).
    size = ({"title": 20, "axis": 16, "label": 14, "row": 15, "line": 5} if projector
            else {"title": 16, "axis": 12, "label": 12, "row": 12, "line": 3})
    blocks = list(galleries or []) + ([gallery] if gallery is not None else [])
    names = list(class_names) if class_names is not None else [str(i) for i in range(10)]
    eps_label = {"linf": "ε (L∞, pixel scale 0–1)", "l2": "ε (L2 norm)", "l1": "ε (L1 norm)"}[norm]
    colour_of = {name: PALETTE[j % len(PALETTE)] for j, name in enumerate(curves)}
    # Built as plain dicts, not graph objects: plotly's validation of 41 frames costs ~0.5 s, more than
    # everything else together, and a rerun with cached curves must stay well under 100 ms.

    def acc_text(i):
        return " · ".join(f"{plotly_text(n)}: {100 * c[i]:.1f}%" for n, c in curves.items())

    traces: list[dict] = []
    for name, acc in curves.items():
        traces.append({"type": "scatter", "x": eps_frames, "y": list(acc), "mode": "lines", "name": plotly_text(name),
                       "line": {"color": colour_of[name], "width": size["line"]},
                       "hovertemplate": "ε=%{x:.3f}<br>accuracy %{y:.1%}<extra>" + plotly_text(name) + "</extra>"})
    dynamic = []  # indices of the traces each frame replaces
    for name, acc in curves.items():
        dynamic.append(len(traces))
        traces.append({"type": "scatter", "x": [eps_frames[0]], "y": [acc[0]], "mode": "markers", "showlegend": False,
                       "hoverinfo": "skip", "marker": {"color": colour_of[name], "size": 14,
                                                       "line": {"color": "white", "width": 2}}})
    # With galleries the curves take the left part and the models' rows stack on the right: at a
    # laptop's 1280 x 720 two models' digits, the curves and the slider fit on one screen together.
    curve_x = [0.0, 0.36] if blocks else [0.0, 1.0]
    row_px = 92  # one strip of 8 digits (about 64 px high at that width) with its title and labels
    default_height = max(460, 170 + 2 * row_px * len(blocks)) if blocks else 460
    layout: dict = {
        "template": "plotly_white", "height": height or default_height, "margin": {"l": 10, "r": 10, "t": 60, "b": 10},
        "title": {"text": f"ε = {eps_frames[0]:.3f}   ·   {acc_text(0)}", "font": {"size": size["title"]}},
        "font": {"size": size["axis"]},
        "legend": {"orientation": "h", "y": 1.02, "x": curve_x[1] if blocks else 1, "xanchor": "right",
                   "yanchor": "bottom"},
        "xaxis": {"title": {"text": eps_label}, "anchor": "y", "domain": curve_x},
        "yaxis": {"title": {"text": "accuracy under attack"}, "tickformat": ".0%", "range": [0, 1.02], "anchor": "x",
                  "domain": [0.0, 1.0]},
    }

    row_titles: list[dict] = []
    label_notes = []  # per block: a function frame index -> the predicted-class annotations
    strip_uris = []  # per block: a function frame index -> (adversarial, perturbation) PNG URIs
    n_rows = 2 * len(blocks)
    for b, block in enumerate(blocks):
        clean = np.asarray(block["clean"])  # (K, H, W) grey digits, or (K, H, W, 3) colour images
        k = len(block["labels"])
        h, w = clean.shape[1:3]
        colour = clean.ndim == 4
        cell = w + GALLERY_GAP  # image pixels from one digit to the next
        adv_axis, delta_axis = 2 + 2 * b, 3 + 2 * b

        def strips(i, block=block, clean=clean, colour=colour):
            adversarial = np.asarray(block["adversarial"][i])
            # Perturbation x10 around mid-grey: 0.05 brighter is full red, 0.05 darker full blue (a grey digit); in
            # colour, each channel's change x10 around mid-grey, the usual way to show a colour perturbation.
            delta = np.clip((adversarial - clean) * 10 * 0.5 + 0.5, 0, 1)
            return image_strip_uri(adversarial), image_strip_uri(delta, diverging=not colour)

        def notes(i, block=block, k=k, h=h, w=w, cell=cell, axis=adv_axis):
            out = []
            for c in range(k):
                pred, conf = int(block["predictions"][i][c]), float(block["confidences"][i][c])
                true = int(block["labels"][c])
                colour = "#2ca02c" if pred == true else "#d62728"
                # Data coordinates of the image axes: each label sits under its own digit whatever the width.
                out.append({"text": f"<b>{names[pred]}</b> {100 * conf:.0f}%", "x": (c * cell + w / 2) * GALLERY_SCALE,
                            "y": h * GALLERY_SCALE - 0.5, "xref": f"x{axis}", "yref": f"y{axis}", "yanchor": "top",
                            "showarrow": False, "font": {"color": colour, "size": size["label"]}})
            return out

        strip_uris.append(strips)
        label_notes.append(notes)
        first_adv, first_delta = strips(0)
        for axis, uri in ((adv_axis, first_adv), (delta_axis, first_delta)):
            dynamic.append(len(traces))
            traces.append({"type": "image", "source": uri, "hoverinfo": "skip", "xaxis": f"x{axis}",
                           "yaxis": f"y{axis}"})
        strip_w, strip_h = (k * cell - GALLERY_GAP) * GALLERY_SCALE, h * GALLERY_SCALE
        model_colour = colour_of.get(block.get("model"), "#333")
        for r, (axis, title) in enumerate((
                (adv_axis, f"<b><span style='color:{model_colour}'>{plotly_text(block.get('model', ''))}</span></b> · "
                           "adversarial images, "
                           "predicted class and confidence"),
                (delta_axis, "perturbation ×10 · red brighter, blue darker"))):
            # Rows from the top: each gets an equal band, the image in its upper part, room for labels and title.
            row = 2 * b + r
            top = 1.0 - row / n_rows
            band = 1.0 / n_rows
            # The adversarial row keeps room below its image for the predicted labels, which the perturbation
            # row's title must not touch.
            domain = [top - band * 0.78, top - band * 0.16] if r == 0 else [top - band * 0.88, top - band * 0.26]
            # Fixed ranges and square pixels: every strip gets the same size, top row first (as images are).
            layout[f"xaxis{axis}"] = {"visible": False, "anchor": f"y{axis}", "domain": [0.40, 1.0],
                                      "range": [-0.5, strip_w - 0.5]}
            # "constraintoward": under its title when the band is taller than the strip.
            layout[f"yaxis{axis}"] = {"visible": False, "anchor": f"x{axis}", "domain": domain,
                                      "range": [strip_h - 0.5, -0.5], "scaleanchor": f"x{axis}", "constrain": "domain",
                                      "constraintoward": "top"}
            row_titles.append({"text": title, "x": 0.40, "xanchor": "left", "y": domain[1], "xref": "paper",
                               "yref": "paper", "yanchor": "bottom", "showarrow": False,
                               "font": {"size": size["row"] - r, "color": "#333" if r == 0 else "#666"}})

    def all_annotations(i):
        return row_titles + [note for notes in label_notes for note in notes(i)]

    if blocks:
        layout["annotations"] = all_annotations(0)

    frames = []
    for i, eps in enumerate(eps_frames):
        data = [{"type": "scatter", "x": [eps], "y": [acc[i]]} for acc in curves.values()]
        frame_layout: dict = {"title": {"text": f"ε = {eps:.3f}   ·   {acc_text(i)}",
                                        "font": {"size": size["title"]}}}
        if blocks:
            for strips in strip_uris:
                adv_uri, delta_uri = strips(i)
                data += [{"type": "image", "source": adv_uri}, {"type": "image", "source": delta_uri}]
            frame_layout["annotations"] = all_annotations(i)
        frames.append({"name": f"{i}", "data": data, "traces": dynamic, "layout": frame_layout})
    steps = [{"method": "animate", "label": f"{eps:.3f}",
              "args": [[f"{i}"], {"mode": "immediate", "frame": {"duration": 0, "redraw": True},
                                  "transition": {"duration": 0}}]}
             for i, eps in enumerate(eps_frames)]
    layout["sliders"] = [{"active": 0, "steps": steps,
                          "currentvalue": {"prefix": "ε = ", "font": {"size": size["title"]}},
                          "pad": {"t": 50}, "x": 0.0, "len": 1.0}]
    return go.Figure({"data": traces, "layout": layout, "frames": frames}, _validate=False)


def morph_figure(frames, probabilities, steps, *, target: int, class_names, title: str, max_frames: int = 41,
                 frame_ms: int = 80):
    """A morph's frames with a client-side slider and ▶ play, beside every class's probability along the steps.

    frames: (T, H, W) grey or (T, H, W, 3) colour images in [0, 1]; probabilities: (T, K) (K classes, or the few
    worth drawing of 1,000: then ``class_names`` names those columns); steps: the step of each frame. At most
    ``max_frames`` evenly spaced frames are kept. They travel as **one** PNG strip, and each slider position only
    moves the image axis's window to its cell (and the marker on the target's curve). Why: an image trace whose
    ``source`` changes is re-decoded asynchronously and drawn blank until then, so playing 80 ms frames would
    show an empty pane; a window that moves over an image already decoded is never blank.
    """
    import base64
    import io

    import numpy as np
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    frames = np.asarray(frames, dtype=np.float32)
    probabilities = np.asarray(probabilities, dtype=np.float32)
    steps = list(steps)
    keep = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    height, width = frames.shape[1:3]
    cell = width + GALLERY_GAP

    def window(k: int) -> list[float]:
        return [k * cell - 0.5, k * cell + width - 0.5]

    fig = make_subplots(rows=1, cols=2, column_widths=[0.35, 0.65],
                        # The picture's column is about a third of the figure: a longer title ran off its left edge.
                        subplot_titles=(plotly_text(title if len(title) <= 28 else title[:27] + "…"),
                                        "class probabilities"))
    # A layout image, not an image trace: Plotly redraws traces when an animation starts, and an image trace is
    # then re-decoded (blank for ~0.1 s); a layout image stays in place while its axis window moves. Pre-scaled
    # (nearest neighbour) so the browser's smoothing of the enlarged picture cannot blur the pixels.
    scale = 4 if height <= 64 else 1  # digits are enlarged; a 224-px photo strip of 41 frames is wide enough as it is
    strip = image_strip(frames[keep], scale=scale)
    buffer = io.BytesIO()
    strip.save(buffer, format="PNG", compress_level=1)
    fig.add_layout_image(source="data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
                         xref="x", yref="y", x=-0.5, y=-0.5, sizex=strip.width / scale, sizey=height,
                         sizing="stretch", xanchor="left", yanchor="top", layer="above")
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", marker=dict(opacity=0), hoverinfo="skip", showlegend=False),
                  row=1, col=1)  # keeps the image's axes drawn
    for c in range(probabilities.shape[1]):
        fig.add_trace(go.Scatter(x=steps, y=probabilities[:, c].tolist(), mode="lines", name=str(class_names[c]),
                                 line=dict(width=4 if c == target else 1.5, color=PALETTE[c % len(PALETTE)])),
                      row=1, col=2)
    # It opens on the result (the last frame); the slider goes back, ▶ plays from the start.
    last = len(keep) - 1
    fig.add_trace(go.Scatter(x=[steps[keep[last]]], y=[float(probabilities[keep[last], target])], mode="markers",
                             showlegend=False, marker=dict(size=12, color="black")), row=1, col=2)
    marker_trace = len(fig.data) - 1
    fig.frames = [go.Frame(name=str(i), data=[go.Scatter(x=[steps[i]], y=[float(probabilities[i, target])])],
                           traces=[marker_trace], layout={"xaxis": {"range": window(k)}}) for k, i in enumerate(keep)]
    still = dict(mode="immediate", frame=dict(duration=0, redraw=False), transition=dict(duration=0))
    fig.update_layout(
        sliders=[dict(steps=[dict(method="animate", label=str(steps[i]), args=[[str(i)], still]) for i in keep],
                      active=last, currentvalue=dict(prefix="step "), pad=dict(t=40), x=0.1, len=0.9)],
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=-0.28, xanchor="left", yanchor="top",
                          buttons=[dict(label="▶ play", method="animate",
                                        args=[[str(i) for i in keep],
                                              dict(still, frame=dict(duration=frame_ms, redraw=False))])])],
        height=380, template="plotly_white", margin=dict(l=10, r=10, t=40, b=10),
        yaxis2=dict(range=[0, 1.02], tickformat=".0%"), xaxis2=dict(title="step"))
    # Square pixels by shrinking the image's domain, not by widening its window (which would show the next frame).
    fig.update_xaxes(visible=False, range=window(last), constrain="domain", row=1, col=1)
    fig.update_yaxes(visible=False, range=[height - 0.5, -0.5], scaleanchor="x", constrain="domain", row=1, col=1)
    return fig


def projector_style(fig, *, font_size: int = 17, line_scale: float = 1.7):
    """A copy of ``fig`` legible on a 1280x720 projector: larger text (axes, legend, titles, annotations such as
    subplot titles) and thicker lines and markers. The figure given is left untouched (it may be cached)."""
    import plotly.graph_objects as go

    out = go.Figure(fig)
    base = out.layout.font.size or 12
    grow = max(font_size - base, 0)
    out.update_layout(font=dict(size=max(base, font_size)), legend=dict(font=dict(size=max(base, font_size) - 1)))
    if out.layout.title and out.layout.title.font and out.layout.title.font.size:
        out.layout.title.font.size += grow
    for annotation in out.layout.annotations or ():
        annotation.font.size = (annotation.font.size or base) + grow
    out.update_xaxes(tickfont=dict(size=max(base, font_size) - 2))
    out.update_yaxes(tickfont=dict(size=max(base, font_size) - 2))
    for trace in out.data:
        if trace.type == "scatter":
            if trace.line is not None:
                trace.line.width = (trace.line.width or 2) * line_scale
            if trace.marker is not None and trace.marker.size is not None:
                trace.marker.size = trace.marker.size * 1.4
    return out
