"""ImageNet networks on photos: the wrapper's preprocessing, the offline EfficientNet-Lite0 mapping, the
tools on random-weight torchvision networks, weights files, and the page's message when weights are missing."""
import pickle

import pytest
import torch

from robust_core.imagenet.models import (
    CROP,
    IMAGENET_MEAN,
    IMAGENET_STD,
    WeightsNotAvailable,
    cached_weights_path,
    imagenet_class_names,
    load_imagenet_model,
    read_weights_file,
    save_weights_file,
    suggested_steps,
    top_k,
)
from robust_core.imagenet.photos import load_shipped_photo, shipped_photos


@pytest.fixture(scope="module")
def lite0():
    return load_imagenet_model("efficientnet_lite0", device="cpu")


def test_preprocessing_resizes_crops_and_normalises_inside_the_model():
    torch.manual_seed(0)  # the untrained network's weights and the photos: the same on every run and machine
    model = load_imagenet_model("squeezenet1_1", pretrained=False, device="cpu")
    photo = torch.rand(2, 3, 256, 341)
    inside = model.preprocess(photo)
    assert inside.shape == (2, 3, CROP, CROP)
    # Shorter side already 256: a pure centre crop, then (x - mean) / std.
    top, left = (256 - 224) // 2, (341 - 224) // 2
    expected = (photo[..., top:top + 224, left:left + 224] - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(inside, expected, atol=1e-6)
    # The extreme pixel values land where the normalisation puts them.
    black, white = model.preprocess(torch.zeros(1, 3, 224, 224)), model.preprocess(torch.ones(1, 3, 224, 224))
    assert torch.allclose(black[0, :, 0, 0], -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD), atol=1e-6)
    assert torch.allclose(white[0, :, 0, 0], (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD), atol=1e-6)
    # Another size is resized (shorter side 256, antialiased) then cropped; gradients reach the photo's own pixels.
    big = torch.rand(1, 3, 480, 640, requires_grad=True)
    out = model(big)
    # All logits, not one: SqueezeNet ends in a ReLU, so an untrained network's single logit can be a flat 0.
    out.sum().backward()
    assert out.shape == (1, 1000) and big.grad.shape == big.shape and big.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="colour images"):
        model(torch.rand(1, 1, 28, 28))


def test_the_offline_efficientnet_lite0_puts_each_shipped_photo_s_class_in_its_top_5(lite0):
    """What proves the key mapping: with a wrong mapping the true classes would not come out on top."""
    assert lite0.name == "efficientnet_lite0" and not lite0.training
    assert not any(p.requires_grad for p in lite0.parameters())
    for name, info in shipped_photos().items():
        if not info.classes:
            continue  # the astronaut: no ImageNet class fits a portrait
        top = top_k(lite0, load_shipped_photo(name))[0]
        assert any(c in info.classes for c, _, _ in top), (name, top)
    cat = top_k(lite0, load_shipped_photo("chelsea"))[0]
    assert cat[0][0] in (281, 282, 285) and cat[0][2] > 0.3  # tabby / tiger cat / Egyptian cat, confidently


@pytest.mark.parametrize("name", ["squeezenet1_1", "resnet18"])
def test_random_weight_torchvision_networks_go_through_saliency_a_targeted_pgd_step_and_a_visualization_step(name):
    from robust_core.attacks import get_attack
    from robust_core.classviz import RECIPES, visualize
    from robust_core.saliency import attribute, available_methods

    torch.manual_seed(0)
    model = load_imagenet_model(name, pretrained=False, device="cpu")
    photo = torch.rand(1, 3, 256, 300)
    for method in ("saliency", "integrated_gradients", "grad_cam", "guided_backprop"):
        assert available_methods(model)[method] == ""
        kwargs = {"n_steps": 4} if method == "integrated_gradients" else {}
        assert attribute(model, photo, 6, method, **kwargs).shape == photo.shape, method
    y = top_k(model, photo)[0][0][0]
    target = (y + 1) % 1000
    x_adv = get_attack("pgd")(model, photo, torch.tensor([y]), eps=4 / 255, targeted=True,
                              target=torch.tensor([target]), steps=1)
    assert x_adv.shape == photo.shape and float((x_adv - photo).abs().max()) <= 4 / 255 + 1e-6
    assert 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1
    recipe = {**RECIPES["photo"], "steps": 1}
    result = visualize(model, target, start="uniform", shape=(3, 224, 224), threshold=None, **recipe)
    assert result.final.shape == (1, 3, 224, 224) and result.probabilities.shape[-1] == 1000


def test_weights_files_load_only_as_tensors_and_must_fit_the_architecture(tmp_path):
    from safetensors.torch import save_file

    model = load_imagenet_model("squeezenet1_1", pretrained=False, device="cpu")
    state = {k: v.contiguous() for k, v in model.backbone.state_dict().items()}
    save_file(state, str(tmp_path / "mine.safetensors"))
    loaded = load_imagenet_model("squeezenet1_1", weights=tmp_path / "mine.safetensors", device="cpu")
    x = torch.rand(1, 3, 224, 224)
    assert torch.allclose(loaded(x), model(x), atol=1e-5)
    torch.save(state, tmp_path / "mine.pth")
    assert set(read_weights_file(tmp_path / "mine.pth")) == set(state)

    class Boom:  # a pickle that would run code when loaded without weights_only
        def __reduce__(self):
            return (print, ("this must never run",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"x": Boom()}))
    with pytest.raises(ValueError, match="not a readable weights file"):
        read_weights_file(tmp_path / "evil.pth")
    save_file({"not.a.layer": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="does not match the architecture"):
        load_imagenet_model("squeezenet1_1", weights=tmp_path / "other.safetensors", device="cpu")
    with pytest.raises(ValueError, match="unknown ImageNet model"):
        load_imagenet_model("not_a_network", pretrained=False)


def test_missing_torchvision_weights_raise_a_message_that_says_where_the_file_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsNotAvailable) as error:
        load_imagenet_model("squeezenet1_1", device="cpu")
    message = str(error.value)
    assert str(cached_weights_path("squeezenet1_1")) in message and "download.pytorch.org" in message
    assert "EfficientNet-Lite0" in message  # the way out that works offline


def test_the_page_explains_missing_weights_and_the_cost_of_big_networks(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.test_pages import APP

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["dataset"] = "imagenet"
    at.session_state["imagenet_model"] = "vgg16"
    at.run()
    at.switch_page("lab_pages/saliency.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("vgg16 weights are not available" in e.value and "vgg16-397923af.pth" in e.value for e in at.error), \
        [e.value for e in at.error]
    big = load_imagenet_model("vgg16", pretrained=False, device="cpu")
    assert suggested_steps(big, 256) <= 16 and suggested_steps(load_imagenet_model("squeezenet1_1", pretrained=False,
                                                                                          device="cpu"), 256) == 256


def test_class_names_come_without_a_download():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[281] == "tabby" and names[6] == "stingray"


def test_the_command_line_predicts_fools_and_refuses_a_bad_photo(tmp_path, capsys):
    from PIL import Image

    from robust_core.imagenet.__main__ import main

    assert main(["predict", "--photo", "chelsea"]) == 0
    assert "tabby" in capsys.readouterr().out
    out = tmp_path / "fooled.png"
    assert main(["fool", "--photo", "chelsea", "--target", "stingray", "--eps-max", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "smallest ε for stingray" in printed and "after: stingray" in printed
    assert Image.open(out).size == (3 * 385, 256)  # photo, attacked photo, change ×10 side by side
    (tmp_path / "notes.jpg").write_text("not a photo")
    assert main(["predict", "--photo", str(tmp_path / "notes.jpg")]) == 2
    assert "error:" in capsys.readouterr().err


def test_an_uploaded_weights_file_is_kept_once_by_content_and_a_bad_one_never_joins_the_folder(tmp_path):
    from safetensors.torch import save

    model = load_imagenet_model("squeezenet1_1", pretrained=False, device="cpu")
    data = save({k: v.contiguous() for k, v in model.backbone.state_dict().items()})
    folder = tmp_path / "imagenet_weights"
    first = save_weights_file(data, file_name="Mine.SafeTensors", folder=folder)
    assert (save_weights_file(data, file_name="again.safetensors", folder=folder) == first
            and first.suffix == ".safetensors")
    x = torch.rand(1, 3, 224, 224)
    assert torch.allclose(load_imagenet_model("squeezenet1_1", weights=first, device="cpu")(x), model(x), atol=1e-5)
    with pytest.raises(ValueError, match="evil.pth is not a readable weights file"):
        save_weights_file(b"not weights", file_name="evil.pth", folder=folder)
    with pytest.raises(ValueError, match="expected a .safetensors or .pth"):
        save_weights_file(data, file_name="weights.zip", folder=folder)
    assert sorted(p.name for p in folder.iterdir()) == [first.name]  # nothing else, no partial file left
