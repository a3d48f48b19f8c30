"""Uploads and weights files are bounded before anything is allocated: the digit upload takes the photos' header-first
checks, every uploader's cap is checked on the server, Streamlit's own cap fits the largest legitimate file, and a
small crafted checkpoint (compressed, old-format, lying headers, a huge architecture in its metadata) is refused from
its headers."""
import ast
import io
import json
import struct
import time
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save as save_safetensors

from robust_core.digits import MAX_FILE_BYTES, NotADigitImage, mnist_style
from robust_core.imagenet.models import MAX_WEIGHTS_FILE_BYTES, read_weights_file
from robust_core.store import EXPORT_META_KEY, InvalidCheckpointError, ModelStore
from robust_core.training import TrainConfig
from robust_core.weights_files import (
    WeightsFileError,
    check_torch_zip,
    safetensors_header,
)

from .test_pages import run_app, stored_model, widget  # noqa: F401 - stored_model is a fixture
from .test_photos import encode, png_declaring

REPO = Path(__file__).resolve().parents[1]
HUGE_MLP = TrainConfig(arch="mlp", arch_kwargs={"hidden": [8192] * 40}, train_subset=1000, epochs=1)


# ---- the digit upload -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("width,height", [(50_000, 50_000), (11_000, 11_000), (7_000, 7_000)])
def test_a_digit_picture_declaring_too_many_pixels_is_refused_from_its_header(width, height):
    """50000² trips PIL's own bomb check (an uncaught DecompressionBombError before); 11000² is the 1.9 GB upload of
    the report; 7000² (49 MP) is under PIL's limit and over the lab's 40 MP."""
    start = time.perf_counter()
    with pytest.raises(NotADigitImage) as info:
        mnist_style(png_declaring(width, height))
    assert time.perf_counter() - start < 2.0
    assert "pixels" in str(info.value) and "damaged" not in str(info.value)


def test_a_digit_picture_in_another_format_or_over_the_byte_cap_is_refused():
    ppm = encode(Image.new("L", (8, 8)), "PPM")  # PIL reads it, the lab does not accept it
    with pytest.raises(NotADigitImage, match="PPM format"):
        mnist_style(ppm)
    with pytest.raises(NotADigitImage, match="limit is 10.0 MB"):
        mnist_style(b"\0" * (MAX_FILE_BYTES + 1))


def test_a_large_digit_photo_reads_like_a_small_one():
    """Large pictures are shrunk before they become float arrays; the digit comes out the same."""
    def digit(side: int) -> bytes:
        paper = np.full((side, side), 235, dtype=np.uint8)
        paper[side // 5 : 4 * side // 5, side // 2 - side // 30 : side // 2 + side // 30] = 20  # a "1"
        return encode(Image.fromarray(paper), "PNG")

    small, large = mnist_style(digit(600)), mnist_style(digit(3000))
    assert large.shape == (1, 1, 28, 28) and small.sum() > 10
    assert (large - small).abs().max() < 0.2


class FakeUpload:
    """What st.file_uploader returns; reading one whose bytes a test withholds fails the test."""

    def __init__(self, name: str, data: bytes | None = None, *, size: int | None = None):
        self.name, self.file_id, self.type = name, f"fake-{name}", "application/octet-stream"
        self._data = data
        self.size = len(data) if size is None else size

    def getvalue(self) -> bytes:
        assert self._data is not None, "an upload over its widget's cap was read"
        return self._data

    read = getvalue


def fake_uploads(monkeypatch, uploads: dict[str, FakeUpload]):
    """Every file uploader whose label starts with a key of ``uploads`` returns that upload (AppTest cannot upload)."""
    import streamlit
    from streamlit.delta_generator import DeltaGenerator

    original = DeltaGenerator.file_uploader

    def chosen(label):
        return next((u for prefix, u in uploads.items() if label.startswith(prefix)), None)

    def method(self, label, *args, **kwargs):
        original(self, label, *args, **kwargs)
        return chosen(label)

    monkeypatch.setattr(DeltaGenerator, "file_uploader", method)
    monkeypatch.setattr(streamlit, "file_uploader", lambda label, *a, **kw: method(streamlit._main, label, *a, **kw))


@pytest.mark.parametrize("upload,message", [
    (FakeUpload("bomb.png", png_declaring(50_000, 50_000)), "too many pixels"),
    (FakeUpload("big.png", None, size=MAX_FILE_BYTES + 1), "the limit is 10 MB"),
])
@pytest.mark.usefixtures("stored_model")
def test_the_saliency_page_refuses_a_hostile_digit_upload_with_a_message(monkeypatch, upload, message):
    fake_uploads(monkeypatch, {"A picture of one digit": upload})
    at = run_app("lab_pages/saliency.py")
    widget(at.radio, "Image").set_value("Upload").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert any("Pick a test image or upload" in i.value for i in at.info)  # nothing was computed


# ---- caps that match the widgets ------------------------------------------------------------------------------
def _uploader_calls():
    for path in sorted((REPO / "lab_pages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "file_uploader":
                yield path.name, node


def test_streamlits_upload_cap_fits_the_largest_widget_and_every_widget_has_its_own():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    server_cap_mb = config["server"]["maxUploadSize"]
    assert server_cap_mb * 2**20 >= MAX_WEIGHTS_FILE_BYTES  # VGG16's 528 MB weights are not answered with a 413
    calls = list(_uploader_calls())
    assert len(calls) >= 4, calls
    for page, call in calls:
        assert "max_upload_size" in {k.arg for k in call.keywords}, f"{page}:{call.lineno} has no cap of its own"


def test_the_models_page_checks_the_upload_size_on_the_server_and_refuses_a_huge_architecture(monkeypatch, store,
                                                                                              tiny_result):
    entry = store.save(tiny_result, name="first")
    before = sorted(p.relative_to(store.root) for p in store.root.rglob("*"))
    fake_uploads(monkeypatch, {"A .safetensors file": FakeUpload("big.safetensors", None, size=201 * 2**20)})
    at = run_app("lab_pages/models.py")
    assert any("the limit is 200 MB" in e.value for e in at.error), [e.value for e in at.error]
    huge = FakeUpload("huge.safetensors", _huge_mlp_checkpoint(store, entry))
    fake_uploads(monkeypatch, {"A .safetensors file": huge})
    at = run_app("lab_pages/models.py")
    assert any("was not imported" in e.value and "do not fit" in e.value for e in at.error), [e.value for e in at.error]
    assert sorted(p.relative_to(store.root) for p in store.root.rglob("*")) == before


# ---- the store's import ---------------------------------------------------------------------------------------
def _huge_mlp_checkpoint(store, entry) -> bytes:
    """An export of ``entry``'s weights (a few hundred kB) whose metadata describes a 2.6-billion-parameter MLP, with
    its id made to match."""
    from safetensors.torch import load_file

    meta = {**store.get(entry.model_id).meta, "config": HUGE_MLP.to_dict(), "id": HUGE_MLP.config_hash()}
    state = load_file(entry.path / "weights.safetensors")
    return save_safetensors(state, metadata={EXPORT_META_KEY: json.dumps(meta, default=str)})


def test_an_import_whose_metadata_describes_a_huge_network_is_refused_before_building_it(store, tiny_result,
                                                                                        monkeypatch, tmp_path):
    import robust_core.checkpoints as checkpoints_module

    entry = store.save(tiny_result)
    payload = _huge_mlp_checkpoint(store, entry)
    monkeypatch.setattr(checkpoints_module, "build_model", lambda *a, **k: pytest.fail("a model was built"))
    target = ModelStore(tmp_path / "target")
    with pytest.raises(InvalidCheckpointError, match="2,624,"):
        target.import_bytes(payload)
    assert target.list() == []
    monkeypatch.undo()
    imported, was_new = target.import_bytes(store.export_bytes(entry.model_id))  # the honest file still imports
    assert was_new and imported.model_id == entry.model_id


# ---- .pth files -----------------------------------------------------------------------------------------------
def _rezip(data: bytes, *, deflate: str | None = None, replace: dict[str, bytes] | None = None) -> bytes:
    """``data`` (a torch zip checkpoint) with member ``deflate`` compressed and members replaced."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            body = (replace or {}).get(info.filename, source.read(info.filename))
            kind = zipfile.ZIP_DEFLATED if info.filename == deflate else zipfile.ZIP_STORED
            target.writestr(info.filename, body, compress_type=kind)
    return out.getvalue()


def _torch_bytes(obj, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def test_a_plain_torch_checkpoint_passes_the_checks_and_loads(tmp_path):
    state = {"w": torch.arange(6.0).view(2, 3), "b": torch.ones(3)}
    path = tmp_path / "good.pth"
    path.write_bytes(_torch_bytes(state))
    check_torch_zip(path, max_bytes=MAX_WEIGHTS_FILE_BYTES)
    loaded = read_weights_file(path)
    assert set(loaded) == {"w", "b"} and torch.equal(loaded["w"], state["w"])


def test_a_compressed_member_is_refused_before_it_is_inflated(tmp_path):
    """A deflated member inflates up to 1000:1; torch would inflate it in full before checking its size."""
    data = _torch_bytes({"w": torch.zeros(4)})
    member = next(n for n in zipfile.ZipFile(io.BytesIO(data)).namelist() if n.endswith("data/0"))
    path = tmp_path / "bomb.pth"
    path.write_bytes(_rezip(data, deflate=member, replace={member: bytes(4_000_000)}))
    assert path.stat().st_size < 20_000
    with pytest.raises(WeightsFileError, match="compressed"):
        check_torch_zip(path, max_bytes=MAX_WEIGHTS_FILE_BYTES)
    with pytest.raises(ValueError, match="not a readable weights file.*compressed"):
        read_weights_file(path)


def test_an_old_format_checkpoint_declaring_a_huge_storage_is_refused(tmp_path):
    """torch's pre-1.6 format allocates each storage at the size its pickle names (here 700 MB, from 368 bytes)."""
    data = _torch_bytes({"w": torch.zeros(4)}, _use_new_zipfile_serialization=False)
    numel = data.find(b"K\x04", data.find(b"cpu"))  # the storage's element count, 4, as a one-byte int
    path = tmp_path / "old.pth"
    path.write_bytes(data[:numel] + b"J" + struct.pack("<i", 175_000_000) + data[numel + 2 :])
    with pytest.raises(ValueError, match="zip format"):
        read_weights_file(path)


def test_zip_members_that_lie_about_their_size_or_are_too_many_are_refused(tmp_path):
    data = bytearray(_torch_bytes({"w": torch.zeros(4)}))
    directory = data.find(b"PK\x01\x02")  # the first central-directory entry: sizes at offsets 20 and 24
    data[directory + 20 : directory + 28] = struct.pack("<II", 700_000_000, 700_000_000)
    path = tmp_path / "lying.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsFileError, match="more than the file"):
        check_torch_zip(path, max_bytes=MAX_WEIGHTS_FILE_BYTES)
    data[directory + 20 : directory + 24] = struct.pack("<I", 10)
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsFileError, match="declares 700,000,000 bytes but stores 10"):
        check_torch_zip(path, max_bytes=MAX_WEIGHTS_FILE_BYTES)
    path.write_bytes(_torch_bytes({"w": torch.zeros(4)}))
    with pytest.raises(WeightsFileError, match="at most 3"):
        check_torch_zip(path, max_bytes=MAX_WEIGHTS_FILE_BYTES, max_members=3)
    with pytest.raises(WeightsFileError, match="the limit is"):
        check_torch_zip(path, max_bytes=100)


def test_a_zip_checkpoint_whose_pickle_would_run_code_is_refused(tmp_path):
    class Boom:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "evil.pth"
    path.write_bytes(_torch_bytes({"x": Boom()}))
    check_torch_zip(path, max_bytes=MAX_WEIGHTS_FILE_BYTES)  # a well-formed zip: weights_only is what refuses it
    with pytest.raises(ValueError, match="not a readable weights file"):
        read_weights_file(path)


# ---- .safetensors headers -------------------------------------------------------------------------------------
def _with_header(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def test_a_safetensors_header_is_checked_against_the_data_it_describes(tmp_path):
    good = save_safetensors({"a": torch.zeros(2, 3), "b": torch.ones(5, dtype=torch.float16)}, metadata={"k": "v"})
    header = safetensors_header(good, max_bytes=10**6)
    assert header.tensors["a"].shape == (2, 3) and header.metadata == {"k": "v"} and header.data_bytes == 24 + 10
    (tmp_path / "good.safetensors").write_bytes(good)
    assert safetensors_header(tmp_path / "good.safetensors", max_bytes=10**6) == header
    bad = {
        "a header longer than the file": (struct.pack("<Q", 10**12) + b"{}", "header claims"),
        "a shape larger than its bytes": (_with_header({"a": {"dtype": "F32", "shape": [10**6, 10**6],
                                                              "data_offsets": [0, 8]}}, bytes(8)), "holds 8 bytes"),
        "a gap between tensors": (_with_header({"a": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}}, bytes(8)),
                                  "does not follow"),
        "data missing at the end": (good[:-4], "truncated"),
        "an unknown dtype": (_with_header({"a": {"dtype": "X9", "shape": [1], "data_offsets": [0, 1]}}, bytes(1)),
                             "dtype"),
        "not JSON": (struct.pack("<Q", 4) + b"{oop", "not valid JSON"),
    }
    for label, (payload, message) in bad.items():
        with pytest.raises(WeightsFileError, match=message):
            safetensors_header(payload, max_bytes=10**6)
        path = tmp_path / "bad.safetensors"
        path.write_bytes(payload)
        with pytest.raises(ValueError, match="not a readable weights file"):
            read_weights_file(path)
    with pytest.raises(WeightsFileError, match="the limit is"):
        safetensors_header(good, max_bytes=len(good) - 1)
