"""Photos for the ImageNet networks: a user's upload, checked and brought to one working size, or a shipped photo.

    from robust_core.imagenet.photos import load_photo, load_shipped_photo, shipped_photos
    x = load_photo(uploaded.getvalue())         # (1, 3, H, W) float in [0, 1], shorter side 256 px
    x = load_shipped_photo("chelsea")           # the same contract, from scikit-image's sample photos
    shipped_photos()["chelsea"].classes         # (281, 282, 285): the ImageNet classes that count as correct

Uploads are untrusted bytes. Only JPEG, PNG and WebP are accepted (by PIL's detected format, never the file
name); size and pixel count are checked from the header before anything is decoded (:mod:`robust_core.image_files`,
which the digit uploads share), so a small file that declares a huge image (a decompression bomb) is refused without
allocating it; the file is then decoded in full so a truncated or corrupt upload fails here, with a message, rather
than later inside an attack. Every problem raises :class:`PhotoError`, whose message says what was wrong and what to
do; no PIL exception escapes.

Every photo, uploaded or shipped, goes through the same steps: EXIF orientation applied (a phone photo shows
upright, as in the user's gallery), any mode brought to 8-bit RGB (alpha composited over white, 16-bit grey
scaled, not clipped), then a LANCZOS resize so the shorter side is :data:`WORKING_SHORT_SIDE` px.

The shipped photos are scikit-image's freely licensed sample photos (``assets/photos/photos.toml`` lists them
with their licences): their pixels are read from the installed scikit-image wheel, not copied into this repo.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from PIL import Image, ImageOps

from ..image_files import MAX_SIDE, ImageFileError, decode_image, open_image_header, size_text

PHOTOS_DIR = Path(__file__).resolve().parents[2] / "assets" / "photos"
CATALOGUE = PHOTOS_DIR / "photos.toml"

# 10 MB: a phone or camera JPEG is 2-8 MB, so this admits every ordinary photo while bounding what one upload
# costs a shared CPU server in memory and decode time (Streamlit's own default upload limit is 200 MB). The
# upload widget should use the same cap so users hear of it before uploading.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# 40 megapixels: above the 12-24 MP most phones and cameras save by default, and 120 MB once decoded as RGB.
# The guard against decompression bombs: a PNG of a few hundred bytes can declare 50000 x 50000 pixels
# (7.5 GB as RGB). PIL's own limit (about 89 MP warns, 179 MP fails) is too generous for a shared server.
MAX_PIXELS = 40_000_000
# Photos are resized so their shorter side is 256 px: the ImageNet models resize to 256 and centre-crop 224
# themselves, so nothing they see is lost, and a bounded size keeps attacks and saliency fast on CPU.
WORKING_SHORT_SIDE = 256
# Longer side / shorter side. Scaling the shorter side to 256 px makes a 20000 x 10 strip 512000 px long;
# beyond 10:1 (a wide panorama) the models' 224 px centre crop would also see a sliver of the picture.
MAX_ASPECT_RATIO = 10.0

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
ACCEPTED_TEXT = "JPEG, PNG or WebP"
# PIL reports a JPEG holding several pictures (many phone and camera JPEGs: a preview or depth map beside the
# photo) as "MPO". It is a JPEG file; its first picture is the photo.
_JPEG_VARIANTS = ("MPO",)
# 16-bit greyscale (PNG) opens in these modes; PIL's convert("RGB") clips them at 255 instead of scaling.
_WIDE_INTEGER_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_WHITE = (255, 255, 255, 255)


class PhotoError(ImageFileError):
    """A photo that cannot be used; the message is meant for the user: what is wrong and what to do."""


@dataclass(frozen=True)
class PhotoInfo:
    """One shipped photo (an entry of ``assets/photos/photos.toml``)."""

    name: str  # the key: "chelsea"
    title: str  # for people: "Chelsea the cat"
    skimage: str  # the function of skimage.data that returns its pixels
    classes: tuple[int, ...]  # ImageNet-1k class indices that count as a correct prediction; () if none fits
    licence: str  # quoted from scikit-image's docstring of the function
    author: str
    source: str
    note: str = ""


# ----------------------------------------------------------------------------------------------------------
# Uploads


def load_photo(data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS,
               short_side: int = WORKING_SHORT_SIDE) -> torch.Tensor:
    """The photo in ``data`` (the bytes of a JPEG, PNG or WebP file) as a float tensor (1, 3, H, W) in [0, 1].

    Upright (EXIF orientation applied), RGB, resized with LANCZOS so that ``min(H, W) == short_side`` pixels
    with the aspect ratio kept (smaller photos are upscaled, so every photo has one working size). Contiguous
    and detached. ``max_bytes``: the largest file accepted, in bytes; ``max_pixels``: the largest width x height
    accepted, checked from the header before decoding.

    Raises :class:`PhotoError` for anything that is not a usable photo: empty, too large, not an image, another
    format, truncated or corrupt, too many pixels, absurd dimensions.
    """
    _check_positive(max_bytes=max_bytes, max_pixels=max_pixels, short_side=short_side)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PhotoError(f"Expected the bytes of an image file, got {type(data).__name__}.")
    data = bytes(data)
    if not data:
        raise PhotoError(f"The file is empty (0 bytes). Choose a {ACCEPTED_TEXT} photo.")
    if len(data) > max_bytes:
        raise PhotoError(f"The file is {size_text(len(data))}; the limit is {size_text(max_bytes)}. "
                         "Resize or recompress the photo (for example export it as a JPEG) and upload it again.")
    image = _decode(data, max_bytes=max_bytes, max_pixels=max_pixels)
    return _to_working_tensor(image, short_side=short_side)


def load_photo_file(path: str | os.PathLike, *, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS,
                    short_side: int = WORKING_SHORT_SIDE) -> torch.Tensor:
    """The photo in the file at ``path``: :func:`load_photo` of its bytes (same checks, same output).

    The file size is checked before it is read, so a huge file is refused without loading it into memory.
    """
    _check_positive(max_bytes=max_bytes, max_pixels=max_pixels, short_side=short_side)
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:  # refuse before reading; load_photo words the message
            raise PhotoError(f"The file {path.name} is {size_text(size)}; the limit is {size_text(max_bytes)}. "
                             "Resize or recompress the photo (for example export it as a JPEG) and try again.")
        data = path.read_bytes()
    except PhotoError:
        raise
    except OSError as exc:
        raise PhotoError(f"Could not read {path}: {exc.strerror or exc}. Check the path and try again.") from exc
    return load_photo(data, max_bytes=max_bytes, max_pixels=max_pixels, short_side=short_side)


def _decode(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """The fully decoded, upright image in ``data``; every failure becomes a :class:`PhotoError`."""
    try:
        # Format, sides and pixel count from the header, before decoding: a bomb is refused before it is allocated.
        image = open_image_header(data, max_bytes=max_bytes, max_pixels=max_pixels, max_side=MAX_SIDE,
                                  formats=ACCEPTED_FORMATS + _JPEG_VARIANTS, wanted=f"a {ACCEPTED_TEXT} photo")
    except ImageFileError as exc:
        raise PhotoError(str(exc)) from exc
    with image:
        width, height = image.size
        if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
            raise PhotoError(f"The image is {width} x {height} pixels: one side is more than {MAX_ASPECT_RATIO:g} "
                             "times the other. Crop it to the part you want the network to see and upload that.")
        try:
            # The full decode: a truncated or corrupt file fails here, not in an attack later.
            decode_image(image, max_pixels=max_pixels)
        except ImageFileError as exc:
            raise PhotoError(str(exc)) from exc
        try:
            return ImageOps.exif_transpose(image)  # a new image, so closing the file below does not touch it
        except Exception as exc:  # a damaged EXIF block
            raise PhotoError(f"This photo's orientation data (EXIF) is damaged ({_reason(exc)}). "
                             "Re-save the photo and upload it again.") from exc


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _check_positive(**limits: int) -> None:
    """Caller mistakes (not the user's): a ValueError that is not a PhotoError."""
    for name, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")


# ----------------------------------------------------------------------------------------------------------
# The one path every photo takes to its working size


def _to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: alpha composited over white, 16-bit grey scaled to 8 bits, other modes converted."""
    if image.mode == "RGB":
        return image
    if image.mode in _WIDE_INTEGER_MODES:
        # 16-bit values (0..65535) to 8-bit by scaling; PIL's convert would clip everything above 255 to white.
        wide = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8), mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        # Transparent pixels have arbitrary colours underneath; white is what a viewer shows them as.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, ...


def _working_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the shorter side exactly ``short_side`` px and the aspect ratio kept (rounded)."""
    scale = short_side / min(width, height)
    if width <= height:
        return short_side, max(short_side, round(height * scale))
    return max(short_side, round(width * scale)), short_side


def _to_working_tensor(image: Image.Image, *, short_side: int) -> torch.Tensor:
    """An upright PIL image as (1, 3, H, W) float in [0, 1], shorter side ``short_side`` px (LANCZOS)."""
    try:
        rgb = _to_rgb(image)
        size = _working_size(*rgb.size, short_side)
        if rgb.size != size:
            rgb = rgb.resize(size, resample=Image.Resampling.LANCZOS)
        pixels = np.array(rgb, dtype=np.uint8)  # (H, W, 3), a copy PIL no longer owns
    except PhotoError:
        raise
    except Exception as exc:  # an exotic mode PIL cannot convert to RGB
        raise PhotoError(f"This image's colour mode ({image.mode}) cannot be converted to RGB. "
                         f"Re-save it as an ordinary RGB {ACCEPTED_TEXT} photo.") from exc
    # uint8 / 255: values exactly k/255, so the tensor round-trips to the 8-bit image without loss.
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).to(torch.float32).div_(255.0)
    return tensor.contiguous().detach()


# ----------------------------------------------------------------------------------------------------------
# Shipped photos


def _read_catalogue(path: Path = CATALOGUE) -> dict[str, PhotoInfo]:
    """The photos listed in ``assets/photos/photos.toml``, by name. A malformed entry is a ValueError naming it."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    photos = {}
    for entry in data.get("photo", []):
        name = entry.get("name")
        missing = [k for k in ("name", "title", "skimage", "licence", "author", "source")
                   if not isinstance(entry.get(k), str) or not entry[k].strip()]
        if missing:
            raise ValueError(f"{path.name}: photo {name!r} needs text for {', '.join(missing)}")
        classes = entry.get("classes", [])
        if not isinstance(classes, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 1000 for c in classes):
            raise ValueError(f"{path.name}: photo {name!r}: classes must be ImageNet-1k indices 0..999")
        if name in photos:
            raise ValueError(f"{path.name}: photo {name!r} is listed twice")
        photos[name] = PhotoInfo(name=name, title=entry["title"], skimage=entry["skimage"], classes=tuple(classes),
                                 licence=entry["licence"], author=entry["author"], source=entry["source"],
                                 note=entry.get("note", ""))
    return photos


# Read once at import: the file ships with the code, and the tests check it parses.
SHIPPED_PHOTOS = MappingProxyType(_read_catalogue())


def shipped_photos() -> dict[str, PhotoInfo]:
    """The photos shipped with the lab, by name (a copy: the caller may change it)."""
    return dict(SHIPPED_PHOTOS)


def load_shipped_photo(name: str, *, short_side: int = WORKING_SHORT_SIDE) -> torch.Tensor:
    """The shipped photo ``name`` as (1, 3, H, W) float in [0, 1], shorter side ``short_side`` px.

    The same contract as :func:`load_photo`, through the same conversion and resize. The pixels come from the
    installed scikit-image wheel (``skimage.data.<function>``; no download). Unknown ``name``: KeyError listing
    the available ones; scikit-image missing: :class:`PhotoError` saying how to install it.
    """
    _check_positive(short_side=short_side)
    if name not in SHIPPED_PHOTOS:
        raise KeyError(f"no shipped photo {name!r}; available: {', '.join(sorted(SHIPPED_PHOTOS))}")
    info = SHIPPED_PHOTOS[name]
    try:
        import skimage.data
    except ImportError as exc:
        raise PhotoError("The shipped photos come from scikit-image, which is not installed: "
                         "pip install scikit-image") from exc
    try:
        pixels = np.asarray(getattr(skimage.data, info.skimage)())
    except Exception as exc:  # a renamed function or a data file missing from the installed wheel
        raise PhotoError(f"scikit-image could not provide the photo {info.title!r} (skimage.data.{info.skimage}: "
                         f"{_reason(exc)}). Reinstall it: pip install --force-reinstall scikit-image") from exc
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise PhotoError(f"skimage.data.{info.skimage} returned {pixels.dtype} {pixels.shape}, not an 8-bit image.")
    return _to_working_tensor(Image.fromarray(pixels), short_side=short_side)


def centre_crop(photo: torch.Tensor, size: int = 224) -> torch.Tensor:
    """The centre ``size`` × ``size`` of a working-size photo (shorter side 256): the part an ImageNet network sees
    (it resizes to 256, then crops 224), used as the canvas of a class visualisation that starts from the photo."""
    h, w = photo.shape[-2:]
    if min(h, w) < size:
        raise ValueError(f"the photo ({h}×{w}) is smaller than the {size}-pixel crop")
    top, left = (h - size) // 2, (w - size) // 2
    return photo[..., top:top + size, left:left + size].contiguous()
