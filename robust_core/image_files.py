"""Untrusted image files, checked from their header before a pixel is decoded.

    from robust_core.image_files import ImageFileError, open_image
    image = open_image(data, max_bytes=10 * 2**20, max_pixels=40_000_000, formats=("PNG", "JPEG"),
                       wanted="a PNG or JPEG picture")      # a fully decoded PIL image

Every upload path (photos for the ImageNet networks, pictures of digits) goes through here: the byte size is checked
first, then ``Image.open`` reads only the header, so format, side lengths and pixel count are known and checked before
anything is allocated for the pixels; a small file that declares a huge image (a decompression bomb: 128 bytes of PNG
can declare 50,000 x 50,000 pixels, 7.5 GB as RGB) is refused without decoding it. Only then is the image decoded in
full, so a truncated or corrupt file fails here with a message. Every problem raises :class:`ImageFileError`, whose
message is meant for the user; no PIL exception escapes.
"""
from __future__ import annotations

import io
import threading
import warnings

from PIL import Image, UnidentifiedImageError

# No real picture has a side this long; a header that says so is corrupt or hostile.
MAX_SIDE = 20_000


class ImageFileError(ValueError):
    """An image file that cannot be used; the message says what is wrong and what to do."""


# warnings.catch_warnings changes process-wide state; two uploads opening at once in a server's threads must
# not restore each other's filters. Held only while PIL reads a header (microseconds), never while decoding.
_WARNINGS_LOCK = threading.Lock()


def open_image_header(data: bytes, *, max_bytes: int, max_pixels: int, max_side: int = MAX_SIDE,
                      formats: tuple[str, ...] | None = None, wanted: str = "an image") -> Image.Image:
    """``Image.open`` of ``data`` once its byte size, format (PIL's detected one, never a file name; ``None``: any),
    side lengths and pixel count passed; no pixel is decoded yet. ``wanted`` ends the messages ("Choose {wanted}.").

    Raises :class:`ImageFileError`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageFileError(f"Expected the bytes of an image file, got {type(data).__name__}.")
    size = len(data)
    if not size:
        raise ImageFileError(f"The file is empty (0 bytes). Choose {wanted}.")
    if size > max_bytes:
        raise ImageFileError(f"The file is {size_text(size)}; the limit is {size_text(max_bytes)}. "
                             "Resize or recompress the picture (for example export it as a JPEG) and upload it again.")
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            # PIL only warns from about 89 MP (and fails from 179 MP) in open(); a warning is easy to miss.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(bytes(data)))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL checks its own limit inside open(), before the size is known here, so it also caps a larger
        # max_pixels given by the caller.
        pil_limit = Image.MAX_IMAGE_PIXELS or max_pixels
        raise ImageFileError(too_many_pixels_text(None, min(max_pixels, pil_limit))) from exc
    except UnidentifiedImageError as exc:
        # PIL cannot tell "not an image" from "an image whose header is damaged" (a PNG with a 0 px side).
        raise ImageFileError(f"This file is not an image, or its header is damaged. Choose {wanted}.") from exc
    except Exception as exc:  # a damaged header can make a format's parser raise nearly anything
        raise ImageFileError(f"This image file is damaged and cannot be read ({_reason(exc)}). "
                             f"Try another copy, or choose {wanted}.") from exc
    try:
        detected = image.format or "unknown"
        if formats is not None and detected not in formats:
            raise ImageFileError(f"This file is in the {detected} format, which is not accepted here. Choose {wanted}.")
        width, height = image.size
        if width * height > max_pixels:
            raise ImageFileError(too_many_pixels_text((width, height), max_pixels))
        if width < 1 or height < 1 or max(width, height) > max_side:
            raise ImageFileError(f"The image claims to be {width} x {height} pixels, which no picture is "
                                 f"(each side must be 1 to {max_side:,} pixels). The file is probably damaged.")
    except BaseException:
        image.close()
        raise
    return image


def decode_image(image: Image.Image, *, max_pixels: int) -> Image.Image:
    """``image`` (from :func:`open_image_header`, with the same ``max_pixels``) with its pixels decoded in full: a
    truncated or corrupt file fails here, as an :class:`ImageFileError`, rather than later in whatever uses it."""
    detected = image.format or "image"
    try:
        image.load()
    except (Image.DecompressionBombError, MemoryError) as exc:
        raise ImageFileError(too_many_pixels_text(image.size, max_pixels)) from exc
    except Exception as exc:  # OSError (truncated), SyntaxError (broken PNG chunks), EOFError, ...
        raise ImageFileError(f"This {_format_name(detected)} file is truncated or damaged and cannot be decoded "
                             f"({_reason(exc)}). Upload the complete file again, or re-save it.") from exc
    return image


def open_image(data: bytes, *, max_bytes: int, max_pixels: int, max_side: int = MAX_SIDE,
               formats: tuple[str, ...] | None = None, wanted: str = "an image") -> Image.Image:
    """The fully decoded image in ``data``: :func:`open_image_header`'s checks, then :func:`decode_image`."""
    image = open_image_header(data, max_bytes=max_bytes, max_pixels=max_pixels, max_side=max_side, formats=formats,
                              wanted=wanted)
    try:
        return decode_image(image, max_pixels=max_pixels)
    except BaseException:
        image.close()
        raise


def too_many_pixels_text(size: tuple[int, int] | None, max_pixels: int) -> str:
    limit = f"the limit is {max_pixels / 1e6:.3g} megapixels"
    what = (f"The image is {size[0]:,} x {size[1]:,} pixels ({size[0] * size[1] / 1e6:.1f} megapixels); "
            if size is not None else "The image declares far too many pixels; ")
    return (what + limit + ". Resize it (the networks look at far fewer: 28 x 28 pixels for a digit, 224 x 224 for a "
            "photo) and upload it again.")


def size_text(n_bytes: int) -> str:
    """A file size for a message: in MB (of 1024 x 1024 bytes) from 0.1 MB, in bytes below."""
    if n_bytes >= 0.1 * 1024 * 1024:
        return f"{n_bytes / (1024 * 1024):.1f} MB"
    return f"{n_bytes:,} bytes"


def _format_name(detected: str) -> str:
    return {"WEBP": "WebP", "MPO": "JPEG"}.get(detected, detected)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


__all__ = ["MAX_SIDE", "ImageFileError", "decode_image", "open_image", "open_image_header", "size_text",
           "too_many_pixels_text"]
