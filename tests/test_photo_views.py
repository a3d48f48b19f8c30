"""The ImageNet-photo views: their state lives in the address (a reload lands on the same photo view),
opening one costs a forward pass (the heavy part waits for its button), the targeted fool reads as its target,
the change is shown at a contrast a room can see, and the saliency grid's labels draw with no missing glyph."""
import time

import pytest
import torch
from torch import nn

from tests.test_pages import widget
from tests.test_url_state import open_with


def _active_jobs():
    from lab_pages._jobs import job_runner

    return [j for j in job_runner().jobs() if j.status in ("queued", "running")]


def test_a_saliency_photo_link_restores_its_view_and_runs_nothing_until_asked():
    at = open_with("lab_pages/saliency.py", dataset="imagenet", net="efficientnet_lite0", photo="coffee",
                   methods="grad_cam,saliency", explain="chosen", target="6", eps="0", models="ffff", attack="pgd")
    assert at.session_state["photo_saliency_photo"] == "coffee"
    assert widget(at.multiselect, "Methods (rows)").value == ["grad_cam", "saliency"]
    assert widget(at.radio, "Explain").value == "chosen" and widget(at.selectbox, "Class").value == 6
    assert widget(at.slider, "Attacked copy: PGD ε (/255)").value == 0
    # The photo and the network's reading at once; the maps wait for their button.
    assert any("reads ·" in m.value and "%" in m.value for m in at.markdown)
    assert any(b.label == "Compute the maps" for b in at.button) and not _active_jobs()
    assert not at.get("image") or all("attribution" not in str(i.proto) for i in at.get("image"))
    # The address is this view's, with nothing left of the digit view's (models=, attack=).
    params = dict(at.query_params)
    assert params["dataset"] == "imagenet" and params["photo"] == "coffee" and params["methods"] == "grad_cam,saliency"
    assert params["target"] == "6" and "models" not in params and "attack" not in params
    # The user changes the view: the address follows.
    widget(at.radio, "Explain").set_value("predicted").run()
    assert at.query_params["explain"] == "predicted" and "target" not in at.query_params


def test_an_attack_photo_link_restores_its_view_and_its_button_runs_it():
    at = open_with("lab_pages/attack.py", dataset="imagenet", photo="chelsea", goal="untargeted", attack="pgd", eps="3")
    assert at.session_state["photo_attack_photo"] == "chelsea"
    assert widget(at.radio, "Goal").value == "untargeted" and widget(at.slider, "ε (L∞, /255)").value == 3
    assert not _active_jobs() and dict(at.query_params)["net"] == "efficientnet_lite0"
    assert any("Copy link to this view" in str(f.proto) for f in at.get("iframe")), "no copy-link button"
    widget(at.button, "Attack").click().run()
    deadline = time.monotonic() + 60
    while _active_jobs() and time.monotonic() < deadline:
        time.sleep(0.05)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [str(i.proto) for i in at.get("image")]
    assert any("the change, scaled ×" in c for c in captions), captions
    # A reload (a new session on the same address) shows the computed view from the runner's cache.
    again = open_with("lab_pages/attack.py", **dict(at.query_params))
    assert any("the change, scaled ×" in str(i.proto) for i in again.get("image")) and not _active_jobs()


class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.head = nn.Linear(8 * 16, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def test_the_targeted_fool_returns_a_photo_read_as_the_target_and_a_stronger_one():
    from robust_core.imagenet.fool import fool_photo

    model = _TinyNet().train()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    clean = int(model.eval()(x).argmax(1))
    model.train()
    target = (clean + 1) % 10
    result = fool_photo(model, x, target=target, eps_max=0.5, steps=20)
    assert model.training  # restored
    model.eval()
    assert result.found and 0 < result.eps <= 0.5
    assert int(model(result.at_boundary).argmax(1)) == target  # the witness, not a replay that may miss
    assert (result.at_boundary - x).abs().max() <= result.eps + 1e-6
    assert result.strong_eps == pytest.approx(min(2 * result.eps, 0.5))
    assert (result.strong - x).abs().max() <= result.strong_eps + 1e-6
    p = model(torch.cat([result.at_boundary, result.strong])).softmax(1)[:, target]
    assert int(model(result.strong).argmax(1)) == target and p[1] >= p[0]
    with pytest.raises(ValueError, match="one photo"):
        fool_photo(model, torch.rand(2, 3, 16, 16), target=0, eps_max=0.1)


def test_the_change_is_scaled_to_full_contrast_and_says_by_how_much():
    from robust_core.imagenet.fool import scaled_change

    delta = torch.zeros(1, 3, 8, 8)
    delta[0, 0, 0, 0], delta[0, 1, 2, 2] = 1.13 / 255, -0.5 / 255
    shown, factor = scaled_change(delta)
    assert factor == pytest.approx(0.5 / (1.13 / 255))
    assert float(shown.max()) == pytest.approx(1.0) and float(shown.min()) < 0.5 - 0.1  # visible both ways
    assert float(shown[0, 2, 5, 5]) == 0.5  # unchanged pixels stay grey
    assert scaled_change(torch.zeros(1, 3, 2, 2)) == (pytest.approx(torch.full((1, 3, 2, 2), 0.5)), 1.0)


def test_every_saliency_method_label_draws_in_the_grid_font_without_a_missing_glyph():
    from PIL import ImageDraw, Image

    from robust_core.saliency import METHODS

    font = ImageDraw.Draw(Image.new("RGB", (4, 4))).getfont()  # what grid_png's draw.text uses
    missing = font.getmask("\U0010fffd")  # a private-use code point: no font has it, so this is .notdef
    notdef = (missing.size, bytes(missing))
    assert (font.getmask("x").size, bytes(font.getmask("x"))) != notdef  # the check tells a glyph from the box
    for method in METHODS.values():
        for char in set(method.title) - {" "}:
            mask = font.getmask(char)
            assert (mask.size, bytes(mask)) != notdef, f"{method.title!r}: {char!r} has no glyph in the grid font"
