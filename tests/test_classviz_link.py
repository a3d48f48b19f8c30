"""The morph publishes each model as soon as it is ready (the same results as separate runs),
and a drawn digit travels in the page's link."""
import base64
import zlib
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from robust_core.classviz import RECIPES, visualize
from robust_core.classviz.compare import compare_morphs
from robust_core.classviz.link import (DrawingCodeError, MAX_CODE_CHARS, decode_drawing, encode_drawing,
                                       quantise_drawing)
from tests.test_classviz import drawn_four
from tests.test_pages import finish_jobs, open_section, widget

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_a_drawing_survives_its_link_at_16_grey_levels():
    four = drawn_four()
    code = encode_drawing(four)
    assert len(code) < 400 and code.isascii() and "=" not in code  # a few hundred characters, URL-safe
    back = decode_drawing(code)
    assert back.shape == (1, 1, 28, 28) and torch.equal(back, quantise_drawing(four))
    assert (back[0] - four).abs().max() <= 0.5 / 15 + 1e-6  # half a level of 16
    assert encode_drawing(back) == code  # a link re-made from the restored drawing is the same link
    noise = torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(0))  # the worst case: no zeros to deflate
    assert len(encode_drawing(noise)) <= MAX_CODE_CHARS and torch.equal(decode_drawing(encode_drawing(noise)),
                                                                        quantise_drawing(noise))
    with pytest.raises(ValueError, match="28 x 28"):
        encode_drawing(torch.zeros(1, 14, 14))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encode_drawing(torch.full((1, 28, 28), 2.0))


def _b64(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


@pytest.mark.parametrize("code, message", [
    ("", "empty"),
    ("A" * (MAX_CODE_CHARS + 1), "too long"),
    ("abc$def", "characters"),
    ("A", "not a drawing code"),  # one base64 character cannot be decoded
    (_b64(b"not zlib at all"), "garbled"),
    (_b64(zlib.compress(bytes(500_000), 9)), "wrong size"),  # a bomb: 500 kB of zeros in a short code
    (_b64(zlib.compress(bytes(100))), "wrong size"),
    (_b64(zlib.compress(bytes([7]) + bytes(392))), "unknown version"),
])
def test_a_bad_drawing_in_a_link_is_refused_with_a_message(code, message):
    with pytest.raises(DrawingCodeError, match=message):
        decode_drawing(code)


def test_each_model_is_published_when_ready_with_the_readings_of_separate_runs(small_cnn, tiny_result, mnist):
    """The job's results (early stop at the threshold, one model after the other, a partial comparison after each)
    are those of separate visualize calls read together, as the page's job computed them before."""
    from robust_core.classviz import readings

    models = {"small": small_cnn, "tiny": tiny_result.model}
    seven = mnist.test_x[0]
    settings = dict(RECIPES["smoothed"], start="image", image=seven, steps=40, threshold=0.6, seed=2)
    train_x, train_y = mnist.train_x[:2000], mnist.train_y[:2000]
    published = []
    before = torch.get_num_threads()
    out = compare_morphs(models, target=3, train_x=train_x, train_y=train_y, on_result=published.append, **settings)
    assert torch.get_num_threads() == before
    assert [list(p.results) for p in published] == [["small"], ["small", "tiny"]]
    assert [p.complete for p in published] == [False, True] and published[-1] is out
    separate = {n: visualize(m, 3, **settings) for n, m in models.items()}
    finals = torch.cat([separate[n].final for n in models])
    read = readings(finals, models, train_x=train_x, train_y=train_y)
    for i, name in enumerate(models):
        assert torch.equal(out.results[name].final, separate[name].final)
        assert out.results[name].stop_reason == separate[name].stop_reason
        assert torch.equal(out.results[name].steps_run, separate[name].steps_run)
        expected = {who: int(c[i]) for who, (c, _) in read.items() if who != name}
        assert {who: c for who, (c, _) in out.cross[name].items()} == expected
        assert out.downloads[name]["gif"][:6] == b"GIF89a" and out.downloads[name]["strip"][:4] == b"\x89PNG"
    # The early stop is real on at least one model: it stopped at the threshold before the last step.
    assert any(r.stop_reason[0] == "threshold" and int(r.steps_run[0]) < 40 for r in out.results.values())
    # The first model's result was complete (read, with its downloads) when it was published.
    assert set(published[0].cross["small"]) == {"tiny", "k-NN (k=3)"} and "small" in published[0].downloads


def _drawing_link(model_id: str, code: str, target: int = 3) -> AppTest:
    """The page opened from a copied link of a drawn digit."""
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update(models=model_id, start="draw", target=str(target), drawing=code)
    at.run()
    at.switch_page("lab_pages/classviz.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_drawn_digit_and_its_morph_come_back_from_the_copied_link(two_models):
    first, _ = two_models
    stroke = torch.zeros(1, 28, 28)
    stroke[0, 5:23, 12:16] = 0.8  # a "1", as mnist_style would give it
    code = encode_drawing(stroke)
    at = _drawing_link(first, code)
    assert any(i.proto.imgs[0].caption == "the drawing from the link" for i in at.get("image"))
    assert at.query_params["drawing"] == code and at.query_params["start"] == "draw"
    open_section(at, "classviz_advanced")
    widget(at.number_input, "Max steps").set_value(15).run()
    [b for b in at.button if b.label == "Morph"][0].click().run()
    finish_jobs(at)
    comparison = at.session_state["classviz"]["comparison"]
    [result] = comparison.results.values()
    assert torch.equal(result.frames[0, 0], decode_drawing(code)[0])  # the morph started from the link's drawing
    assert any("Read by the others" in m.value for m in at.markdown)
    # The same link opened again (another student, same server): the drawing and its result, with no click.
    again = _drawing_link(first, code)
    open_section(again, "classviz_advanced")
    widget(again.number_input, "Max steps").set_value(15).run()
    assert any("Read by the others" in m.value for m in again.markdown)
    # "Draw a new digit" drops the link's drawing: the canvas is back and the address no longer holds one.
    widget(again.button, "Draw a new digit").click().run()
    assert "drawing" not in again.query_params and "classviz_linked_drawing" not in again.session_state


@pytest.mark.parametrize("code", ["garbled!", "A" * 5000, _b64(zlib.compress(bytes(100_000), 9))])
def test_a_garbled_drawing_link_says_so_and_the_page_still_works(two_models, code):
    first, _ = two_models
    at = _drawing_link(first, code)
    assert any("could not be restored" in w.value for w in at.warning), [w.value for w in at.warning]
    assert widget(at.radio, "Start from").value == "draw" and "drawing" not in at.query_params


def test_folded_settings_are_built_only_once_opened_and_keep_their_values_while_closed(two_models):
    """A lecture path's folded settings (lab_pages._layout.lazy_settings_box): no widget is built for a room that
    does not open them, the address's choices are what they show once opened, and a value changed in them survives
    runs that do not draw them."""
    first, _ = two_models
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update(models=first, start="test", index="4", target="9", focus="morph")
    at.run()
    at.switch_page("lab_pages/classviz.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.radio and not at.number_input and not at.multiselect  # folded: nothing built
    open_section(at, "classviz_settings")
    assert widget(at.radio, "Start from").value == "test" and widget(at.number_input, "Test image").value == 4
    assert widget(at.selectbox, "Target class").value == 9 and not [e for e in at.number_input
                                                                      if e.label == "Max steps"]
    open_section(at, "classviz_advanced")
    widget(at.number_input, "Max steps").set_value(15).run()
    widget(at.toggle, "Compare with a gradient-free k-NN morph").set_value(True).run()
    at.session_state["classviz_settings"] = False
    at.run()
    at.run()  # two runs without the widgets: Streamlit has dropped their own state by now
    assert not at.number_input and not at.exception
    # ... and the morph these closed runs asked for used the kept values (the run's key: models, target, all
    # targets, k-NN, the settings).
    opened_on = at.session_state["_classviz_opened"]
    assert opened_on[3] is True and "'steps': 15" in opened_on[4]
    open_section(at, "classviz_settings")
    assert widget(at.number_input, "Max steps").value == 15
    assert widget(at.toggle, "Compare with a gradient-free k-NN morph").value is True
    assert widget(at.number_input, "Test image").value == 4
