"""Pictures of a morph to save or share: a PNG strip of frames, an animated GIF, the all-targets row."""
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


def _grey(result: VisualizationResult, frames: list[int], image: int | None) -> np.ndarray:
    """(K, N, H, W) grey frames (colour channels averaged): every image, or only ``image`` (N = 1)."""
    if image is not None and not 0 <= image < result.frames.shape[1]:
        raise ValueError(f"image must be in 0..{result.frames.shape[1] - 1}, not {image}")
    grey = result.frames[frames].mean(2).cpu().numpy()
    return grey if image is None else grey[:, [image]]


def strip_png(result: VisualizationResult, *, image: int = 0, frames: int = 11, scale: int = 4) -> bytes:
    """One image's morph as a PNG strip of ``frames`` evenly spaced frames, start on the left, final on the right."""
    return image_strip_png(_grey(result, frame_indices(result.frames.shape[0], frames), image)[:, 0], scale=scale,
                           compress_level=6)


def finals_png(result: VisualizationResult, *, scale: int = 4) -> bytes:
    """The final image of every row (e.g. one per target class for "all targets") as one PNG strip."""
    return image_strip_png(result.final.mean(1).cpu().numpy(), scale=scale, compress_level=6)


def gif(result: VisualizationResult, *, image: int | None = 0, scale: int = 4, frame_ms: int = 60,
        max_frames: int = 200) -> bytes:
    """A morph as an animated GIF (looping; at most ``max_frames`` frames, evenly spaced): one image's,
    or with ``image=None`` every image side by side (all targets at once)."""
    grey = _grey(result, frame_indices(result.frames.shape[0], max_frames), image)
    pictures = [image_strip(row, scale=scale) for row in grey]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
    return buffer.getvalue()
