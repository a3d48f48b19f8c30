"""Each page restores its main state from the address and writes it back: any view is a link."""
from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.test_pages import widget

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_with(page: str, **params) -> AppTest:
    """The app opened at ``page`` with a query string, as a pasted link or a lecture card opens it."""
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update(params)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_attack_page_round_trip(two_models):
    first, second = two_models
    at = open_with("lab_pages/attack.py", models=f"{second},{first}", attack="fgsm", n="100", cmp=second,
                   cmp_attacks="fgsm,pgd")
    assert widget(at.multiselect, "Models").value == [second, first]
    assert widget(at.selectbox, "Attack").value == "fgsm" and widget(at.selectbox, "Test images").value == 100
    assert widget(at.selectbox, "Model to compare on").value == second
    assert widget(at.multiselect, "Attacks (L∞, default parameters, largest ε 0.4)").value == ["fgsm", "pgd"]
    # The user changes the view: the address follows.
    widget(at.selectbox, "Attack").select("pgd").run()
    widget(at.multiselect, "Models").set_value([first]).run()
    assert at.query_params["attack"] == "pgd" and at.query_params["models"] == first
    assert at.query_params["n"] == "100" and at.query_params["dataset"] == "mnist"
    # A link naming unknown models or values falls back to the defaults, with no error.
    bad = open_with("lab_pages/attack.py", models="ffffffffffffffff", attack="nonsense", n="7")
    assert widget(bad.selectbox, "Attack").value == "pgd" and widget(bad.selectbox, "Test images").value == 500
    assert len(widget(bad.multiselect, "Models").value) == 1


def test_class_visualization_round_trip(two_models):
    first, second = two_models
    at = open_with("lab_pages/classviz.py", models=second, start="test", index="4", target="3")
    assert widget(at.multiselect, "Models (side by side)").value == [second]
    assert widget(at.radio, "Start from").value == "test" and widget(at.number_input, "Test image").value == 4
    assert widget(at.selectbox, "Target class").value == 3
    widget(at.number_input, "Test image").set_value(7).run()
    assert at.query_params["index"] == "7" and at.query_params["target"] == "3" and at.query_params["start"] == "test"


def test_saliency_round_trip_and_a_linked_dataset(two_models):
    first, second = two_models
    at = open_with("lab_pages/saliency.py", models=second, index="12")
    assert widget(at.multiselect, "Models (columns)").value == [second]
    assert widget(at.number_input, "Image (0 … 9999)").value == 12
    widget(at.number_input, "Image (0 … 9999)").set_value(13).run()
    assert at.query_params["index"] == "13" and widget(at.number_input, "Image (0 … 9999)").value == 13
    # ?dataset= switches the sidebar's dataset.
    fashion = open_with("lab_pages/saliency.py", dataset="fashion_mnist")
    assert fashion.session_state["dataset"] == "fashion_mnist"


def test_confidence_round_trip(two_models):
    first, second = two_models
    at = open_with("lab_pages/confidence.py", models=f"{second},{first}", split="validation", n="500",
                   inputs="adversarial", attack="fgsm", eps="0.2")
    assert widget(at.multiselect, "Models").value == [second, first]
    assert widget(at.selectbox, "Split").value == "validation" and widget(at.selectbox, "Images").value == 500
    assert widget(at.radio, "Inputs").value == "adversarial" and widget(at.selectbox, "Attack").value == "fgsm"
    assert abs(widget(at.slider, "ε (L∞)").value - 0.2) < 1e-9
    widget(at.slider, "ε (L∞)").set_value(0.3).run()
    widget(at.multiselect, "Models").set_value([first]).run()
    assert (at.query_params["eps"] == "0.3" and at.query_params["models"] == first
            and at.query_params["split"] == "validation")
    bad = open_with("lab_pages/confidence.py", split="train", n="3", eps="9")
    assert widget(bad.selectbox, "Split").value == "test" and widget(bad.selectbox, "Images").value == 1000
    assert abs(widget(bad.slider, "ε (L∞)").value - 0.1) < 1e-9


def test_a_second_change_of_a_linked_widget_sticks(two_models):
    """A default taken from the address must not make the widget a new one at each change (it reset every second
    change to the address's value)."""
    first, second = two_models
    at = open_with("lab_pages/attack.py", models=f"{second},{first}", attack="fgsm", n="100")
    for choice in ("pgd", "apgd_ce", "fgsm"):
        widget(at.selectbox, "Attack").select(choice).run()
        assert widget(at.selectbox, "Attack").value == choice and at.query_params["attack"] == choice
    conf = open_with("lab_pages/confidence.py", split="validation", inputs="adversarial", eps="0.2")
    for split in ("test", "validation", "test"):
        widget(conf.selectbox, "Split").select(split).run()
        assert widget(conf.selectbox, "Split").value == split
    for eps in (0.3, 0.35):
        widget(conf.slider, "ε (L∞)").set_value(eps).run()
        assert abs(widget(conf.slider, "ε (L∞)").value - eps) < 1e-9
    viz = open_with("lab_pages/classviz.py", models=second, start="test", index="4", target="3")
    for target in (5, 7):
        widget(viz.selectbox, "Target class").select(target).run()
        assert widget(viz.selectbox, "Target class").value == target
    # A new link (a lecture card) in the same session still wins over the widget's own state.
    viz.query_params["target"] = "2"
    viz.run()
    assert widget(viz.selectbox, "Target class").value == 2
