"""Saliency maps: Captum behind one contract, checked on models whose answer is known."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from robust_core.models.networks import ImageClassifier, Normalize
from robust_core.saliency import (METHODS, attribute, available_methods, deletion_insertion, grid_png, heatmap, make_baseline,
                                  randomisation_check, rank_correlation)


def linear_model(seed=0):
    torch.manual_seed(seed)
    blocks = OrderedDict(head=nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))
    return ImageClassifier(Normalize([0.0], [1.0]), blocks)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_keeps_shape_device_and_mode(small_cnn, mnist, method):
    x, y = mnist.test_x[:3], mnist.test_y[:3]
    small_cnn.train()
    out = attribute(small_cnn, x, y, method, n_steps=8, nt_samples=4)
    assert out.shape == x.shape and out.device == x.device and not out.requires_grad
    assert torch.isfinite(out).all() and out.abs().sum() > 0
    assert small_cnn.training
    assert all(p.grad is None for p in small_cnn.parameters())
    small_cnn.eval()


def test_vanilla_saliency_of_a_linear_model_is_the_absolute_weight_row(mnist):
    model = linear_model()
    x = mnist.test_x[:2]
    out = attribute(model, x, 4, "saliency")
    w = model.blocks.head[1].weight[4].detach().view(1, 28, 28)
    assert torch.allclose(out[0], w.abs(), atol=1e-6) and torch.allclose(out[1], w.abs(), atol=1e-6)


def test_integrated_gradients_is_complete(small_cnn, mnist):
    """Sum of attributions = f(x) - f(baseline) for the target logit (within the Riemann error)."""
    x, y = mnist.test_x[:4], mnist.test_y[:4]
    for kind in ("black", "blurred"):
        out = attribute(small_cnn, x, y, "integrated_gradients", baseline=kind, n_steps=200)
        base = make_baseline(x, kind)
        with torch.no_grad():
            gap = small_cnn(x).gather(1, y[:, None]).squeeze(1) - small_cnn(base).gather(1, y[:, None]).squeeze(1)
        assert torch.allclose(out.flatten(1).sum(1), gap, rtol=0.05, atol=0.05), (kind, out.flatten(1).sum(1), gap)


def test_grad_cam_finds_the_lit_quadrant_of_a_known_conv_net():
    """A net whose logit 0 is the mean of a conv feature that fires on bright pixels: the CAM lights
    up where the image is bright (top-left quadrant) and stays dark elsewhere."""
    conv = nn.Conv2d(1, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.fill_(1 / 9)
        conv.bias.zero_()
    head = nn.Linear(1, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        head.bias.zero_()
    blocks = OrderedDict(conv1=nn.Sequential(conv, nn.ReLU()),
                         head=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), head))
    model = ImageClassifier(Normalize([0.0], [1.0]), blocks)
    x = torch.zeros(1, 1, 28, 28)
    x[..., 2:12, 2:12] = 1.0
    cam = attribute(model, x, 0, "grad_cam")[0, 0]
    assert cam[2:12, 2:12].mean() > 10 * (cam[16:, 16:].mean() + 1e-6)


def test_conv_methods_are_refused_with_a_reason_on_an_mlp(mnist):
    model = linear_model()
    reasons = available_methods(model)
    assert reasons["saliency"] == "" and "convolutional" in reasons["grad_cam"]
    with pytest.raises(ValueError, match="convolutional"):
        attribute(model, mnist.test_x[:1], 0, "grad_cam")
    with pytest.raises(ValueError, match="NaN"):
        attribute(model, torch.full((1, 1, 28, 28), float("nan")), 0, "saliency")


def test_heatmap_and_rank_correlation():
    a = torch.randn(2, 1, 28, 28)
    maps = heatmap(a)
    assert maps.shape == (2, 28, 28) and maps.min() >= 0 and maps.max() <= 1
    assert heatmap(a, signed=True).min() < 0
    assert torch.allclose(rank_correlation(a, a), torch.ones(2))
    assert rank_correlation(a, torch.randn(2, 1, 28, 28)).abs().max() < 0.2


def test_randomisation_changes_gradient_maps_and_deletion_beats_random_order(small_cnn, mnist):
    x, y = mnist.test_x[:8], mnist.test_y[:8]
    steps = randomisation_check(small_cnn, x, y, "saliency")
    assert [name for name, _ in steps] == ["head", "dense", "conv2", "conv1"]
    # Fully randomised, the map drifts away from the trained model's (measured: 0.63 rank correlation;
    # the digit's outline still shapes a random ReLU net's gradient, Adebayo et al.'s point).
    assert steps[-1][1] < 0.85 and steps[-1][1] <= steps[0][1] + 0.05
    maps = attribute(small_cnn, x, y, "input_x_gradient")
    informed = deletion_insertion(small_cnn, x, y, maps, steps=10)
    random = deletion_insertion(small_cnn, x, y, torch.rand_like(maps), steps=10)
    assert informed["deletion_auc"] < random["deletion_auc"]
    assert len(informed["deletion"]) == 11 and informed["deletion"][0] == pytest.approx(random["deletion"][0])


def test_grid_png_is_a_png_of_the_right_size():
    import io

    import numpy as np
    from PIL import Image

    cells = [[np.random.rand(28, 28), None], [np.random.rand(28, 28) * 2 - 1, np.random.rand(28, 28)]]
    png = grid_png(cells, row_labels=["a", "b"], col_labels=["m1", "m2"], images=[np.zeros((28, 28))] * 2)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (150 + 2 * 120, 40 + 2 * 120)
