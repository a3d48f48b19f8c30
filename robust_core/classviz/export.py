"""Pictures of a morph to save or share: a PNG strip of frames, an animated GIF, the all-targets row.

Grey for one-channel images (MNIST), RGB for three-channel ones (photos); any other channel count is shown
grey (channels averaged). Any H, W: the default ``scale`` enlarges small images (4x for 28 x 28) and leaves
photos (112 px and more) at their size.
"""
from __future__ import annotations

import io

import numpy as np

from ..plots import image_strip, image_strip_png
from .visualize import VisualizationResult


def frame_indices(n_frames: int, count: int) -> list[int]:
    """``count`` recorded frames evenly spaced from the start to the final one (both always included)."""
    if n_frames < 1 or count < 1:
        raise ValueError("need at least one frame and count >= 1")
    return sorted(set(np.linspace(0, n_frames - 1, min(count, n_frames)).round().astype(int).tolist()))


def default_scale(height: int) -> int:
    """Upscaling for images ``height`` pixels high: 4 for 28 x 28 digits, 1 from 112 pixels (photos)."""
    return max(1, 112 // max(int(height), 1))


def _pictures(images) -> np.ndarray:
    """Images (..., C, H, W) as arrays to draw: (..., H, W) grey, or (..., H, W, 3) colour when C = 3."""
    images = images.detach().float().cpu()
    if images.shape[-3] == 3:
        return images.movedim(-3, -1).numpy()
    return images.mean(-3).numpy()


def _frames(result: VisualizationResult, frames: list[int], image: int | None) -> np.ndarray:
    """(K, N, H, W) grey or (K, N, H, W, 3) colour frames: every image, or only ``image`` (N = 1)."""
    if image is not None and not 0 <= image < result.frames.shape[1]:
        raise ValueError(f"image must be in 0..{result.frames.shape[1] - 1}, not {image}")
    pictures = _pictures(result.frames[frames])
    return pictures if image is None else pictures[:, [image]]


def strip(images: np.ndarray, *, scale: int):
    """K images side by side as one PIL image, ``GALLERY_GAP`` white pixels apart, upscaled ``scale`` times without
    smoothing: (K, H, W) grey or (K, H, W, 3) RGB (:func:`robust_core.plots.image_strip`)."""
    return image_strip(np.asarray(images, dtype=np.float32), scale=scale)


def _png(images: np.ndarray, scale: int) -> bytes:
    return image_strip_png(np.asarray(images, dtype=np.float32), scale=scale, compress_level=6)


def strip_png(result: VisualizationResult, *, image: int = 0, frames: int = 11, scale: int | None = None) -> bytes:
    """One image's morph as a PNG strip of ``frames`` evenly spaced frames, start on the left, final on the right
    (grey or RGB; ``scale``: PNG pixels per image pixel, default :func:`default_scale`)."""
    scale = scale or default_scale(result.frames.shape[-2])
    return _png(_frames(result, frame_indices(result.frames.shape[0], frames), image)[:, 0], scale)


def finals_png(result: VisualizationResult, *, scale: int | None = None) -> bytes:
    """The final image of every row (e.g. one per target class for "all targets") as one PNG strip."""
    return _png(_pictures(result.final), scale or default_scale(result.final.shape[-2]))


def gif(result: VisualizationResult, *, image: int | None = 0, scale: int | None = None, frame_ms: int = 60,
        max_frames: int = 200) -> bytes:
    """A morph as an animated GIF (looping; at most ``max_frames`` frames, evenly spaced): one image's,
    or with ``image=None`` every image side by side (all targets at once). Colour frames are quantised to
    256 colours each (GIF's palette)."""
    from PIL import Image

    scale = scale or default_scale(result.frames.shape[-2])
    rows = _frames(result, frame_indices(result.frames.shape[0], max_frames), image)
    pictures = [strip(row, scale=scale) for row in rows]
    if pictures[0].mode == "RGB":
        pictures = [p.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) for p in pictures]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
    return buffer.getvalue()
