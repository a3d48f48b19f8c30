"""Photo loading for the ImageNet pages: the output contract, orientation and modes, and every rejection."""
import io
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, features

from robust_core.imagenet.photos import (
    MAX_UPLOAD_BYTES,
    SHIPPED_PHOTOS,
    WORKING_SHORT_SIDE,
    PhotoError,
    PhotoInfo,
    load_photo,
    load_photo_file,
    load_shipped_photo,
    shipped_photos,
)

ACCEPTED_WORDS = ("JPEG", "PNG", "WebP")


def encode(image: Image.Image, format: str, **save_kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **save_kwargs)
    return buffer.getvalue()


def random_rgb(width: int, height: int, *, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), mode="RGB")


def assert_working_photo(x: torch.Tensor, *, width: int, height: int, short_side: int = WORKING_SHORT_SIDE):
    """The output contract of every loader, for a source image of ``width`` x ``height`` pixels."""
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
    assert x.ndim == 4 and x.shape[:2] == (1, 3)
    assert x.is_contiguous() and not x.requires_grad
    assert 0.0 <= x.min().item() and x.max().item() <= 1.0
    h, w = x.shape[2:]
    assert min(h, w) == short_side
    assert (w / h) == pytest.approx(width / height, rel=0.01)


# --- shipped photos --------------------------------------------------------------------------------------

def test_the_four_scikit_image_photos_are_shipped_with_licences():
    photos = shipped_photos()
    assert {"astronaut", "chelsea", "coffee", "rocket"} <= set(photos)
    for name, info in photos.items():
        assert isinstance(info, PhotoInfo) and info.name == name
        assert info.licence.strip() and info.author.strip() and info.source.strip() and info.title.strip()
        assert all(0 <= c < 1000 for c in info.classes)
    assert set(photos["chelsea"].classes) == {281, 282, 285}  # tabby, tiger cat, Egyptian cat
    assert photos["astronaut"].classes == () and photos["astronaut"].note  # no ImageNet class is a person
    assert "CC0" in photos["chelsea"].licence and "Stefan van der Walt" in photos["chelsea"].author
    photos.pop("chelsea")  # a copy: the catalogue itself is untouched
    assert "chelsea" in SHIPPED_PHOTOS


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket"])
def test_every_shipped_photo_loads_at_the_working_size(name):
    skimage_data = pytest.importorskip("skimage.data")
    original = getattr(skimage_data, SHIPPED_PHOTOS[name].skimage)()
    x = load_shipped_photo(name)
    assert_working_photo(x, width=original.shape[1], height=original.shape[0])
    assert x.std().item() > 0.05  # a real picture, not a blank canvas


def test_a_shipped_photo_takes_the_same_path_as_an_upload():
    skimage_data = pytest.importorskip("skimage.data")
    as_upload = load_photo(encode(Image.fromarray(skimage_data.coffee()), "PNG"))
    assert torch.equal(load_shipped_photo("coffee"), as_upload)
    assert load_shipped_photo("coffee", short_side=128).shape[2] == 128


def test_an_unknown_shipped_photo_lists_the_available_ones():
    with pytest.raises(KeyError, match="chelsea"):
        load_shipped_photo("dog")


def test_without_scikit_image_the_message_says_how_to_install_it(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "skimage", None)  # makes `import skimage` raise ImportError
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(PhotoError, match="pip install scikit-image"):
        load_shipped_photo("chelsea")


# --- uploads that load -----------------------------------------------------------------------------------

def test_png_round_trip_matches_pils_own_lanczos_resize():
    image = random_rgb(64, 48)
    x = load_photo(encode(image, "PNG"))
    assert x.shape == (1, 3, 256, 341)  # 64 * 256 / 48 = 341.3
    expected = np.asarray(image.resize((341, 256), resample=Image.Resampling.LANCZOS), dtype=np.float32) / 255
    got = x[0].permute(1, 2, 0).numpy()
    assert np.abs(got - expected).max() < 1 / 255 + 1e-6


def test_a_large_photo_is_shrunk_and_a_portrait_stays_portrait(tmp_path):
    path = tmp_path / "portrait.jpg"
    path.write_bytes(encode(random_rgb(300, 600), "JPEG", quality=90))
    x = load_photo_file(path)
    assert x.shape == (1, 3, 512, 256)
    assert_working_photo(load_photo_file(path, short_side=100), width=300, height=600, short_side=100)


def test_exif_orientation_is_applied():
    """40 x 20, left half red, right half blue, EXIF 6: shown rotated 90° clockwise, so red on top, blue below."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif.tobytes())
    x = load_photo(data)
    assert x.shape == (1, 3, 512, 256)  # portrait: 20 wide x 40 tall once rotated
    top, bottom = x[0, :, :200].mean(dim=(1, 2)), x[0, :, -200:].mean(dim=(1, 2))
    assert top[0] > 0.8 and top[2] < 0.2  # red
    assert bottom[2] > 0.8 and bottom[0] < 0.2  # blue
    # Control: the same pixels without the EXIF tag stay landscape, red on the left.
    plain = load_photo(encode(Image.fromarray(pixels), "JPEG", quality=95))
    assert plain.shape == (1, 3, 256, 512) and plain[0, 0, :, :200].mean() > 0.8


def test_transparent_pixels_become_white_and_every_mode_gives_three_channels():
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red, but the left half fully transparent
    rgba[:, 16:, 3] = 255
    x = load_photo(encode(Image.fromarray(rgba, mode="RGBA"), "PNG"))
    assert x.shape == (1, 3, 256, 256)
    assert x[0, :, :, :100].mean(dim=(1, 2)).min() > 0.95  # white where transparent
    assert x[0, 1, :, -100:].max() < 0.05  # red (no green) where opaque

    palette = random_rgb(32, 24).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    grey = random_rgb(24, 32).convert("L")
    for image in (palette, grey, grey.convert("1"), random_rgb(20, 20).convert("CMYK")):
        format = "JPEG" if image.mode == "CMYK" else "PNG"
        assert_working_photo(load_photo(encode(image, format)), width=image.width, height=image.height)
    g = load_photo(encode(grey, "PNG"))
    assert torch.equal(g[0, 0], g[0, 1]) and torch.equal(g[0, 1], g[0, 2])


def test_sixteen_bit_grey_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 32), (32, 1)).astype(np.uint16)
    x = load_photo(encode(Image.fromarray(ramp), "PNG"))
    assert x.shape == (1, 3, 256, 256)
    assert x[0, 0, :, :20].mean() < 0.1 and x[0, 0, :, -20:].mean() > 0.9  # dark on the left, not all white
    assert 0.4 < x.mean().item() < 0.6


@pytest.mark.skipif(not features.check("webp"), reason="this PIL was built without WebP support")
def test_webp_is_accepted():
    x = load_photo(encode(random_rgb(30, 40), "WEBP", quality=90))
    assert_working_photo(x, width=30, height=40)


# --- rejections ------------------------------------------------------------------------------------------

def rejected(data: bytes, **kwargs) -> str:
    with pytest.raises(PhotoError) as info:
        load_photo(data, **kwargs)
    return str(info.value)


def test_empty_bytes_are_rejected():
    assert "empty" in rejected(b"")


def test_text_is_not_an_image():
    message = rejected(b"Hello, this is a text file and not a photo at all.\n" * 10)
    assert "not an image" in message and all(word in message for word in ACCEPTED_WORDS)


@pytest.mark.parametrize("format", ["GIF", "BMP"])
def test_other_image_formats_are_refused_by_name(format):
    message = rejected(encode(random_rgb(16, 16), format))
    assert format in message and all(word in message for word in ACCEPTED_WORDS)


@pytest.mark.parametrize("format", ["PNG", "JPEG"])
def test_a_truncated_file_is_rejected(format):
    data = encode(random_rgb(64, 64), format)
    message = rejected(data[: len(data) // 2])
    assert "truncated" in message or "damaged" in message


def test_a_file_over_the_size_cap_is_rejected_with_both_sizes(tmp_path):
    data = encode(random_rgb(32, 32), "PNG")
    message = rejected(data, max_bytes=1000)
    assert f"{len(data):,} bytes" in message and "1,000 bytes" in message
    assert load_photo(data, max_bytes=len(data)).shape[1] == 3  # exactly at the cap is fine
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(PhotoError, match="limit"):
        load_photo_file(path, max_bytes=1000)
    over = rejected(b"\0" * (MAX_UPLOAD_BYTES + 1))  # the default cap, worded in MB
    assert "10.0 MB" in over


def test_a_missing_file_is_a_photo_error(tmp_path):
    with pytest.raises(PhotoError, match="Could not read"):
        load_photo_file(tmp_path / "nowhere.jpg")


def test_more_pixels_than_allowed_is_rejected():
    data = encode(random_rgb(40, 30), "PNG")
    assert "megapixels" in rejected(data, max_pixels=40 * 30 - 1)
    assert load_photo(data, max_pixels=40 * 30).shape[0] == 1


def png_declaring(width: int, height: int) -> bytes:
    """A real 4 x 4 PNG whose IHDR chunk claims ``width`` x ``height`` pixels (CRC fixed so PIL believes it)."""
    data = bytearray(encode(random_rgb(4, 4), "PNG"))
    assert data[12:16] == b"IHDR"  # signature (8), length (4), type (4), then 13 bytes of data and the CRC
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize("width,height", [(50_000, 50_000), (7_000, 7_000)])
def test_a_decompression_bomb_fails_fast_before_decoding(width, height):
    """50000² trips PIL's own bomb check; 7000² (49 MP) is under PIL's limit and must be caught by ours."""
    data = png_declaring(width, height)
    start = time.perf_counter()
    message = rejected(data)
    assert time.perf_counter() - start < 2.0
    assert "pixels" in message and "damaged" not in message  # refused as a bomb, not found broken on decoding


def test_absurd_dimensions_are_rejected():
    assert "20,000" in rejected(png_declaring(25_000, 10), max_pixels=10**9)
    assert "Crop" in rejected(encode(random_rgb(200, 10), "PNG"))  # 20:1, past the aspect-ratio limit
    assert "damaged" in rejected(png_declaring(0, 4))  # PIL refuses a zero side already when reading the header


def test_caller_mistakes_are_not_photo_errors():
    with pytest.raises(ValueError) as info:
        load_photo(encode(random_rgb(8, 8), "PNG"), short_side=0)
    assert not isinstance(info.value, PhotoError)
