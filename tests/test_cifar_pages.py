"""The pages on CIFAR-10's 32×32 colour images (generated data in CIFAR-10's file format: no CIFAR-10 is reachable
here), with a small WideResNet trained on it: each page works, shows colour, and measures ε in the field's units."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from robust_core.store import ModelStore
from robust_core.training import TrainConfig
from tests.generated_cifar import write_generated_cifar10
from tests.test_pages import APP, finish_jobs

TINY_WRN = TrainConfig(dataset="cifar10", arch="wrn_16_4", arch_kwargs={"depth": 10, "widen": 1}, epochs=1,
                       batch_size=64, precision="fp32", seed=0)


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    """Generated CIFAR-10 batches beside the real MNIST and Fashion-MNIST folders (links)."""
    root = write_generated_cifar10(tmp_path_factory.mktemp("cifar-data"), per_batch=400, test=500)
    shared = Path(os.environ["ROBUST_DATA_DIR"])
    for name in ("MNIST", "FashionMNIST"):
        if (shared / name).exists():
            (root / name).symlink_to(shared / name)
    return root


@pytest.fixture(scope="module")
def tiny_wrn_export(cifar_dir, tmp_path_factory):
    """A WRN-10-1 trained one epoch on the generated data, as an exported checkpoint (trained once per module)."""
    from robust_core.data import load_dataset

    store = ModelStore(tmp_path_factory.mktemp("cifar-store"))
    _, entry, _ = store.train_or_load(TINY_WRN, data=load_dataset("cifar10", root=cifar_dir, download=False))
    return store.export_bytes(entry.model_id)


@pytest.fixture
def cifar_model(cifar_dir, tiny_wrn_export, isolated_store, monkeypatch):
    monkeypatch.setenv("ROBUST_DATA_DIR", str(cifar_dir))
    entry, _ = ModelStore(isolated_store).import_bytes(tiny_wrn_export)
    return entry.model_id


def open_page(page: str, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.query_params.update(dataset="cifar10", **params)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_morph_runs_on_colour_images_and_shows_them_in_colour(cifar_model):
    at = open_page("lab_pages/classviz.py", models=cifar_model, index="0", target="3")
    start = [r for r in at.radio if r.label == "Start from"][0]
    assert start.value == "test" and not {"draw", "Draw a digit"} & set(start.options)  # no canvas in colour
    [b for b in at.button if b.label == "Morph"][0].click().run()
    finish_jobs(at)
    assert not at.exception, [e.value for e in at.exception]
    assert any("Read by the others" in m.value for m in at.markdown)
    assert at.get("plotly_chart")


def test_the_attack_page_measures_cifar_in_its_own_units_with_a_colour_gallery(cifar_model):
    """Curves to 32/255 (not the digits' 0.4), the comparison on CIFAR-10's grid, and the gallery in colour."""
    import json

    at = open_page("lab_pages/attack.py", models=cifar_model, n="100", attack="fgsm")
    buttons = [b for b in at.button if b.label.startswith("Compute (")]
    if buttons:
        buttons[0].click().run()
    finish_jobs(at)
    finish_jobs(at)  # the gallery is crafted after the curves are shown
    assert not at.exception, [e.value for e in at.exception]
    [chart] = [c for c in at.get("plotly_chart") if json.loads(c.proto.spec).get("frames")]
    spec = json.loads(chart.proto.spec)
    [curve] = [t for t in spec["data"] if t.get("mode") == "lines"]
    assert max(curve["x"]) == pytest.approx(32 / 255, abs=1e-6)
    images = [t for t in spec["data"] if t["type"] == "image"]
    assert len(images) == 2  # the adversarial row and the perturbation row
    strip = Image.open(io.BytesIO(__import__("base64").b64decode(images[0]["source"].split(",", 1)[1])))
    assert strip.mode == "RGB"
    pixels = np.asarray(strip).reshape(-1, 3).astype(int)
    assert (np.abs(pixels[:, 0] - pixels[:, 1]) > 10).mean() > 0.1  # colour, not grey
    labels = " ".join(a["text"] for a in spec["layout"]["annotations"])
    assert "automobile" not in labels  # short names under 32-pixel images
    assert "Accuracy at ε=0.0314" in at.dataframe[0].value.columns  # 8/255, the field's radius, is a column


def test_the_train_page_trains_a_wide_resnet_of_any_depth_and_width(cifar_dir, isolated_store, monkeypatch):
    monkeypatch.setenv("ROBUST_DATA_DIR", str(cifar_dir))
    from tests.test_pages import widget

    at = open_page("lab_pages/train.py")
    widget(at.selectbox, "Architecture").select("wrn_16_4").run()
    widget(at.selectbox, "Depth (6n + 4 layers)").select(10)
    widget(at.number_input, "Widening factor").set_value(1)
    widget(at.selectbox, "Training images").select(1000)
    widget(at.number_input, "Epochs").set_value(3)
    widget(at.button, "Train").click().run()
    finish_jobs(at)
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    [entry] = ModelStore(isolated_store).list("cifar10")
    assert entry.meta["config"]["arch"] == "wrn_16_4"
    assert entry.meta["config"]["arch_kwargs"] == {"depth": 10, "widen": 1}
    assert entry.meta["parameters"] == 77_850 and entry.meta["metrics"]["test_acc"] > 0.3  # 77% here; chance 10%


def test_saliency_shows_a_colour_input_beside_its_maps(cifar_model):
    import json

    from tests.test_pages import widget

    at = open_page("lab_pages/saliency.py", models=cifar_model)
    widget(at.radio, "Display").set_value("side by side").run()
    assert not at.exception, [e.value for e in at.exception]
    grids = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    traces = [t for spec in grids for t in spec["data"]]
    [picture] = [t for t in traces if t["type"] == "image"][:1]
    z = picture["z"]  # (Plotly sends arrays as {"dtype", "bdata", "shape"})
    shape = tuple(int(v) for v in z["shape"].split(",")) if isinstance(z, dict) else np.asarray(z).shape
    assert shape == (32, 32, 3)  # the input row, in colour
    assert any(t["type"] == "heatmap" for t in traces)
