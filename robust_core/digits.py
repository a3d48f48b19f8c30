"""Turn any picture of a digit (a drawing, an uploaded photo) into an MNIST-like 28 x 28 input.

MNIST itself was made this way (LeCun et al.): grey levels, the digit cropped to its bounding box,
scaled to fit a 20 x 20 box keeping its aspect ratio, then placed in a 28 x 28 image so that its
centre of mass is at the centre. A model trained on MNIST misreads a digit that skips these steps.
"""
from __future__ import annotations

import numpy as np
import torch

from .image_files import ImageFileError, open_image

# The same caps as the photos for the ImageNet networks (robust_core.imagenet.photos): 10 MB admits any phone photo
# of a digit on paper, 40 megapixels any phone's default resolution, and both are checked from the file's header
# before a pixel is decoded (a 128-byte PNG can declare 50,000 x 50,000 pixels).
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000
# Formats a picture of a digit comes in. Others PIL can read (EPS hands the file to Ghostscript, for one) are
# refused: a visitor's upload only reaches the parsers it needs.
ACCEPTED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "GIF", "TIFF")
ACCEPTED_TEXT = "a PNG, JPEG, WebP, BMP, GIF or TIFF picture of a digit"
# A decoded picture is shrunk to this longer side before it becomes float arrays: the digit ends up 20 x 20 pixels,
# and a 40-megapixel photo as four float32 channels would take 640 MB.
WORKING_SIDE = 1024


class NotADigitImage(ValueError):
    """The input is not an image, or holds nothing to read (an empty canvas)."""


def to_grayscale(image) -> np.ndarray:
    """A float (H, W) array in [0, 1] from a PIL image, an (H, W[, 3|4]) array (uint8 or float), or file bytes.

    Transparent pixels (a canvas's untouched background) count as black. Light backgrounds (a photo
    of ink on paper) are inverted so that the digit is bright on dark, as in MNIST.
    """
    from PIL import Image

    if isinstance(image, (bytes, bytearray, memoryview)):
        try:
            image = open_image(image, max_bytes=MAX_FILE_BYTES, max_pixels=MAX_PIXELS, formats=ACCEPTED_FORMATS,
                               wanted=ACCEPTED_TEXT)
        except ImageFileError as exc:
            raise NotADigitImage(str(exc)) from exc
    if isinstance(image, Image.Image):
        image = image.convert("RGBA") if image.mode in ("RGBA", "LA", "P", "PA") else image.convert("L")
        image.thumbnail((WORKING_SIDE, WORKING_SIDE))  # in place, keeping the aspect ratio; a smaller one stays
        image = np.asarray(image)
    a = np.asarray(image, dtype=np.float32)
    if a.ndim not in (2, 3) or a.size == 0 or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise NotADigitImage(f"expected an image array (H, W) or (H, W, 3/4), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise NotADigitImage("the image contains NaN or infinite values")
    if a.max() > 1.0:
        a = a / 255.0
    if a.ndim == 3:
        alpha = a[..., 3] if a.shape[2] == 4 else np.ones(a.shape[:2], dtype=np.float32)
        grey = a[..., :3].mean(2) if a.shape[2] >= 3 else a[..., 0]
        if a.shape[2] == 4 and alpha.min() < 1.0:
            return np.clip(grey * alpha, 0, 1)  # strokes on a transparent canvas: ink is what is opaque
        a = grey
    if np.median(a) > 0.5:  # dark digit on a light background
        a = 1.0 - a
    return np.clip(a, 0, 1)


def mnist_style(image, *, threshold: float = 0.1) -> torch.Tensor:
    """An MNIST-like (1, 1, 28, 28) float tensor in [0, 1] from any picture of one digit.

    Raises :class:`NotADigitImage` for a non-image or an empty picture (nothing brighter than
    ``threshold`` once the background is dark).
    """
    from PIL import Image

    a = to_grayscale(image)
    # Faint noise (JPEG artefacts, paper texture) below the threshold is background.
    a = np.where(a >= threshold, a, 0.0).astype(np.float32)
    rows, cols = np.nonzero(a)
    if len(rows) == 0:
        raise NotADigitImage("The picture is empty: draw or upload a digit.")
    crop = a[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize((new_w, new_h), Image.LANCZOS),
                         dtype=np.float32) / 255.0
    canvas = np.zeros((28, 28), dtype=np.float32)
    top, left = (28 - new_h) // 2, (28 - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    # Shift so the centre of mass sits at the centre (13.5, 13.5), as MNIST's creators did.
    total = canvas.sum()
    cy = (canvas.sum(1) * np.arange(28)).sum() / total
    cx = (canvas.sum(0) * np.arange(28)).sum() / total
    dy, dx = int(round(13.5 - cy)), int(round(13.5 - cx))
    shifted = np.zeros_like(canvas)
    src_y = slice(max(0, -dy), min(28, 28 - dy))
    dst_y = slice(max(0, dy), min(28, 28 + dy))
    src_x = slice(max(0, -dx), min(28, 28 - dx))
    dst_x = slice(max(0, dx), min(28, 28 + dx))
    shifted[dst_y, dst_x] = canvas[src_y, src_x]
    return torch.from_numpy(np.clip(shifted, 0, 1)).view(1, 1, 28, 28)


__all__ = ["ACCEPTED_FORMATS", "MAX_FILE_BYTES", "MAX_PIXELS", "NotADigitImage", "mnist_style", "to_grayscale"]
