"""MNIST-style preprocessing of drawn or uploaded digits."""
import io

import numpy as np
import pytest

from robust_core.digits import NotADigitImage, mnist_style


def test_a_shifted_stroke_is_cropped_scaled_and_centred():
    canvas = np.zeros((280, 280), dtype=np.uint8)
    canvas[20:120, 200:215] = 255  # a "1" drawn in the top-right corner
    x = mnist_style(canvas)[0, 0].numpy()
    assert x.shape == (28, 28) and 0 <= x.min() and x.max() <= 1
    rows, cols = np.nonzero(x > 0.1)
    assert rows.max() - rows.min() + 1 in (19, 20, 21)  # the tall side fits 20 px
    cy = (x.sum(1) * np.arange(28)).sum() / x.sum()
    cx = (x.sum(0) * np.arange(28)).sum() / x.sum()
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1


def test_a_dark_digit_on_white_paper_is_inverted_and_transparent_canvas_is_black():
    from PIL import Image

    paper = np.full((100, 60, 3), 240, dtype=np.uint8)
    paper[20:80, 25:35] = 10
    buffer = io.BytesIO()
    Image.fromarray(paper).save(buffer, format="JPEG")
    x = mnist_style(buffer.getvalue())[0, 0].numpy()
    assert x[14, 14] > 0.5 and x[0, 0] == 0
    rgba = np.zeros((50, 50, 4), dtype=np.uint8)
    rgba[10:40, 20:25] = [255, 255, 255, 255]
    assert mnist_style(rgba).sum() > 0


def test_bad_inputs_are_refused_clearly():
    with pytest.raises(NotADigitImage, match="empty"):
        mnist_style(np.zeros((200, 200, 4), dtype=np.uint8))
    with pytest.raises(NotADigitImage, match="not an image"):
        mnist_style(b"%PDF-1.4 this is not a picture")
    with pytest.raises(NotADigitImage, match="NaN"):
        mnist_style(np.full((10, 10), np.nan))
