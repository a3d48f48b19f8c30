"""A drawn digit in a link: a 28 x 28 grey image as a short URL-safe text (a few hundred characters).

    from robust_core.classviz.link import encode_drawing, decode_drawing
    code = encode_drawing(digit)        # digit: (1, 28, 28) or (1, 1, 28, 28) in [0, 1]
    same = decode_drawing(code)         # (1, 1, 28, 28): the digit quantised to 16 grey levels

The format: 784 grey levels of 4 bits (16 levels, two pixels per byte, row by row), after one version byte, deflated
(zlib) and written in base64url without padding. 16 levels because a drawing is mostly black and white with
anti-aliased edges: a drawn digit's code is about 150 characters (the tests' drawn 4: 148; 8-bit levels: 272), at most
half a level (1/30) from the drawing, and the morphs of the drawn 4 -> 9 and 7 -> 2 on the shipped standard, PGD-AT and
GFA CNNs were read the same from the quantised start as from the drawing. A page that puts a drawing in its address
morphs :func:`quantise_drawing` of it, so the link reproduces the very same morph.

:func:`decode_drawing` reads text from a visitor's address: anything that is not such a code (too long, not base64url,
not zlib, a decompression bomb, the wrong size or version) raises :class:`DrawingCodeError` with a message to show.
"""
from __future__ import annotations

import base64
import binascii
import re
import zlib

import torch

SIZE = 28
LEVELS = 16
VERSION = 1
PACKED_BYTES = 1 + SIZE * SIZE // 2  # the version byte, then two 4-bit pixels per byte
# A deflated 393-byte payload cannot exceed ~400 bytes, ~540 base64 characters: longer text is not a drawing.
MAX_CODE_CHARS = 1024
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class DrawingCodeError(ValueError):
    """A ``drawing`` text that is not a drawing this module wrote; the message says what is wrong."""


def _as_square(image: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(image).detach().float().cpu()
    if x.numel() != SIZE * SIZE or x.shape[-2:] != (SIZE, SIZE):
        raise ValueError(f"a drawing is one 28 x 28 grey image, not shape {tuple(x.shape)}")
    x = x.reshape(SIZE, SIZE)
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise ValueError("a drawing's pixels must be finite and in [0, 1]")
    return x


def quantise_drawing(image: torch.Tensor) -> torch.Tensor:
    """``image`` at the link's 16 grey levels, (1, 1, 28, 28): what :func:`decode_drawing` returns for its code."""
    levels = (_as_square(image) * (LEVELS - 1)).round()
    return (levels / (LEVELS - 1)).reshape(1, 1, SIZE, SIZE)


def encode_drawing(image: torch.Tensor) -> str:
    """A (1, 28, 28) or (1, 1, 28, 28) image in [0, 1] as URL-safe text (base64url, no padding)."""
    levels = (_as_square(image) * (LEVELS - 1)).round().to(torch.uint8).flatten()
    packed = (levels[0::2] << 4 | levels[1::2]).numpy().tobytes()
    payload = zlib.compress(bytes([VERSION]) + packed, 9)
    return base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=")


def decode_drawing(code: str) -> torch.Tensor:
    """The (1, 1, 28, 28) image in [0, 1] that ``code`` holds; :class:`DrawingCodeError` for anything else."""
    if not isinstance(code, str) or not code:
        raise DrawingCodeError("the link's drawing is empty")
    if len(code) > MAX_CODE_CHARS:
        raise DrawingCodeError(f"the link's drawing is too long ({len(code)} characters; a drawing takes at most "
                               f"{MAX_CODE_CHARS})")
    if not _BASE64URL.fullmatch(code):
        raise DrawingCodeError("the link's drawing has characters a drawing code never has (it is cut or altered)")
    try:
        payload = base64.urlsafe_b64decode(code + "=" * (-len(code) % 4))
    except (binascii.Error, ValueError):
        raise DrawingCodeError("the link's drawing is not a drawing code (cut or altered)") from None
    inflate = zlib.decompressobj()
    try:
        # Never more than one byte past a drawing: a small code that inflates to megabytes stops here.
        raw = inflate.decompress(payload, PACKED_BYTES + 1)
    except zlib.error:
        raise DrawingCodeError("the link's drawing is garbled (cut or altered)") from None
    if len(raw) != PACKED_BYTES or not inflate.eof or inflate.unused_data:
        raise DrawingCodeError("the link's drawing has the wrong size (cut or altered)")
    if raw[0] != VERSION:
        raise DrawingCodeError(f"the link's drawing is of an unknown version ({raw[0]})")
    packed = torch.frombuffer(bytearray(raw[1:]), dtype=torch.uint8)
    levels = torch.stack([packed >> 4, packed & 0x0F], dim=1).flatten()
    return (levels.float() / (LEVELS - 1)).reshape(1, 1, SIZE, SIZE)


__all__ = ["DrawingCodeError", "MAX_CODE_CHARS", "decode_drawing", "encode_drawing", "quantise_drawing"]
