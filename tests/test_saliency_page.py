"""The Saliency page through AppTest: the randomisation verdict, the check plots' colours, the grid's
colour bar, a caption that matches the display mode, and method names the selector does not hide."""
import json

import pytest

from robust_core.saliency import METHODS
from robust_core.store import ModelStore
from tests.test_pages import run_app, widget


@pytest.fixture
def saliency_page(isolated_store, tiny_result):
    ModelStore(isolated_store).save(tiny_result, name="first")
    return run_app("lab_pages/saliency.py")


def run(at):
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def grid_spec(at):
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def test_method_and_model_chips_wrap_instead_of_hiding(saliency_page):
    """Streamlit keeps a multiselect placed in a column on one scrolling row: with the four default
    methods only "Saliency (vanilla gradient)" and half of "Integrated Gradients" showed."""
    assert widget(saliency_page.multiselect, "Methods (rows)").proto.wrap is True
    assert widget(saliency_page.multiselect, "Models (columns)").proto.wrap is True


def test_the_checks_give_a_verdict_per_method_and_pair_the_curves_by_colour(saliency_page):
    at = saliency_page
    widget(at.toggle, "Also on an adversarial image").set_value(False)
    widget(at.multiselect, "Methods (rows)").set_value(["saliency", "integrated_gradients", "grad_cam"])
    run(at)
    widget(at.number_input, "Images").set_value(4)
    [b for b in at.button if b.label == "Run the checks"][0].click()
    run(at)
    verdicts = [m.value for m in at.markdown if "check_circle" in m.value or ":material/cancel:" in m.value]
    assert len(verdicts) == 1, [m.value for m in at.markdown]
    lines = verdicts[0].splitlines()
    assert len(lines) == 3
    for line, method in zip(lines, ["saliency", "integrated_gradients", "grad_cam"]):
        passes, fails = "check_circle" in line, ":material/cancel:" in line
        assert METHODS[method].title in line and passes != fails
        assert ("passes" in line) == passes and ("fails" in line) == fails and "rank correlation" in line
    # Integrated Gradients from a black baseline keeps the digit's silhouette under random weights.
    assert ":material/cancel:" in lines[1] and "fails" in lines[1]
    table = at.dataframe[0].value
    assert set(table["Randomisation check"]) <= {"passes", "fails", "gives no verdict"}

    _, randomisation, deletion = (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
    curves = [t for t in deletion["data"] if t.get("legendgroup") != "style"]
    assert len(curves) == 6  # deletion and insertion per method
    by_method = {}
    for t in curves:
        by_method.setdefault(t["legendgroup"], []).append(t)
    colours = []
    for method, (deleted, inserted) in by_method.items():
        assert deleted["line"]["color"] == inserted["line"]["color"]  # a method's two curves share a colour
        assert deleted["line"].get("dash", "solid") == "solid" and inserted["line"]["dash"] == "dash"
        assert sum(t.get("showlegend", True) for t in (deleted, inserted)) == 1  # one legend entry per method
        colours.append(deleted["line"]["color"])
    assert len(set(colours)) == 3
    # The randomisation curves use the same colour per method.
    assert [t["line"]["color"] for t in randomisation["data"]] == colours


def test_the_grid_has_a_colour_bar_and_the_caption_follows_the_mode(saliency_page):
    at = saliency_page
    widget(at.toggle, "Also on an adversarial image").set_value(False)
    widget(at.multiselect, "Methods (rows)").set_value(["saliency", "integrated_gradients"])
    run(at)
    bars = [t for t in grid_spec(at)["data"] if t["type"] == "heatmap" and t.get("showscale", True)
            and t.get("colorscale") != "gray" and "colorbar" in t]
    assert len(bars) == 1 and bars[0]["zmin"] == 0 and "|attribution|" in bars[0]["colorbar"]["title"]["text"]
    assert any("|attribution|" in c.value for c in at.caption)

    widget(at.toggle, "Signed").set_value(True)
    run(at)
    bars = [t for t in grid_spec(at)["data"] if t["type"] == "heatmap" and t.get("showscale", True)
            and "colorbar" in t and t.get("colorscale") != "gray"]
    assert sorted(b["zmin"] for b in bars) == [-1, 0]  # signed IG and unsigned vanilla gradient: one bar each
    [caption] = [c.value for c in at.caption if "Heatmaps" in c.value]
    assert "signed attribution for Integrated Gradients" in caption and "|attribution| for Saliency" in caption

    widget(at.multiselect, "Methods (rows)").set_value(["integrated_gradients"])
    run(at)
    [caption] = [c.value for c in at.caption if "Heatmaps" in c.value]
    assert "|attribution|" not in caption and "signed attribution" in caption
    bars = [t for t in grid_spec(at)["data"] if t["type"] == "heatmap" and t.get("showscale", True)
            and "colorbar" in t and t.get("colorscale") != "gray"]
    assert [b["zmin"] for b in bars] == [-1]
