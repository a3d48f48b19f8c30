"""Saliency maps: Captum behind one contract, checked on models whose answer is known."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from robust_core.models.networks import ImageClassifier, Normalize
from robust_core.saliency import (
    METHODS,
    RandomisationStep,
    attribute,
    available_methods,
    deletion_insertion,
    grid_png,
    heatmap,
    make_baseline,
    randomisation_check,
    randomisation_verdict,
    rank_correlation,
    visible_pixels,
)


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
    assert [s.layer for s in steps] == ["head", "dense", "conv2", "conv1"]
    # Fully randomised, the map drifts away from the trained model's (measured: 0.42 rank correlation over
    # the pixels the network sees; the digit's outline still shapes a random ReLU net's gradient).
    assert steps[-1].correlation < 0.85 and steps[-1].correlation <= steps[0].correlation + 0.05
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


def left_half_linear_model(seed=0):
    """A linear model that never reads the right half of the image: those pixels get zero attribution
    whatever the weights, as the seed CNN's last two rows and columns do (unpadded convolutions, pooling)."""
    class LeftHalf(nn.Module):
        def forward(self, x):
            return x[..., :14]

    torch.manual_seed(seed)
    blocks = OrderedDict(head=nn.Sequential(LeftHalf(), nn.Flatten(), nn.Linear(28 * 14, 10)))
    return ImageClassifier(Normalize([0.0], [1.0]), blocks)


def test_rank_correlation_is_spearman_with_average_ranks_for_ties():
    from scipy.stats import spearmanr

    # By hand: ranks (2, 2, 2, 4, 5) and (2, 2, 2, 5, 4), centred (-1, -1, -1, 1, 2) and (-1, -1, -1, 2, 1): 7/8.
    a = torch.tensor([0.0, 0, 0, 1, 2]).view(1, 1, 1, 5)
    b = torch.tensor([0.0, 0, 0, 2, 1]).view(1, 1, 1, 5)
    assert float(rank_correlation(a, b)) == pytest.approx(0.875)
    # Many ties (small integers), as in maps that are 0 wherever an MNIST pixel is black: scipy's Spearman.
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-3, 4, (3, 1, 28, 28), generator=g).float()
    b = torch.randint(-3, 4, (3, 1, 28, 28), generator=g).float()
    b[:, :, :20] = a[:, :, :20]
    for absolute in (True, False):
        expected = [spearmanr((a[i].abs() if absolute else a[i]).flatten(),
                              (b[i].abs() if absolute else b[i]).flatten())[0]
                    for i in range(3)]
        assert rank_correlation(a, b, absolute=absolute).tolist() == pytest.approx(expected, abs=1e-5)
    # A flat map has no ranking: undefined, not an invented number.
    assert rank_correlation(torch.zeros(1, 1, 28, 28), torch.rand(1, 1, 28, 28)).isnan().all()
    # A mask leaves pixels out.
    mask = torch.zeros(28, 28, dtype=torch.bool)
    mask[:20] = True
    assert torch.allclose(rank_correlation(a, b, mask=mask), torch.ones(3))


def test_randomisation_check_ignores_pixels_the_network_never_reads(mnist):
    """Saliency of a linear model is |w| of the target row: re-initialised weights are independent of the
    old ones, so the maps must not correlate. Counting the right half (0 in both maps whatever the
    weights) would credit the method with agreement it did not earn."""
    model = left_half_linear_model(seed=1)  # not 0: the check re-initialises from seed 0
    x = mnist.test_x[:4]
    seen = visible_pixels(model, x)
    assert seen[:, :14].all() and not seen[:, 14:].any()
    [step] = randomisation_check(model, x, 3, "saliency")
    assert step.layer == "head" and abs(step.correlation) < 0.15


def test_verdict_gradient_passes_and_input_times_weight_fails_on_a_linear_model(mnist):
    """On a linear model the answers are known: the gradient is the weight row (a new one after
    re-initialisation: passes); Integrated Gradients from black is x ⊙ w, 0 on every black pixel whatever
    w, so |map| keeps the digit's silhouette (fails) while its sign, the sign of w, is new (near 0)."""
    model = linear_model(seed=1)  # not 0: the check re-initialises from seed 0
    x, y = mnist.test_x[:4], mnist.test_y[:4]
    cascades = {m: randomisation_check(model, x, y, m, n_steps=8) for m in ("saliency", "integrated_gradients")}
    verdicts = randomisation_verdict(cascades)
    assert verdicts["saliency"].passes is True and verdicts["saliency"].correlation < 0.2
    assert verdicts["saliency"].signed_correlation is None  # vanilla gradient is shown as |gradient|
    ig = verdicts["integrated_gradients"]
    assert ig.passes is False and ig.correlation > 0.8 and abs(ig.signed_correlation) < 0.2
    assert f"{ig.correlation:.2f}" in ig.reason and "sign" in ig.reason


def test_verdict_on_a_trained_cnn_passes_the_gradient_and_fails_integrated_gradients(small_cnn, mnist):
    """Integrated gradients keeping a ~0.99 correlation after every layer is randomised, on a trained CNN, read
    as Adebayo et al. read it: vanilla gradient passes, IG from a black baseline fails."""
    x, y = mnist.test_x[:6], mnist.test_y[:6]
    verdicts = randomisation_verdict({m: randomisation_check(small_cnn, x, y, m, n_steps=8)
                                      for m in ("saliency", "integrated_gradients")})
    assert verdicts["saliency"].passes is True, verdicts["saliency"]
    assert verdicts["integrated_gradients"].passes is False, verdicts["integrated_gradients"]
    assert abs(verdicts["integrated_gradients"].signed_correlation) < 0.3


def test_verdict_reads_the_last_step_of_the_cascade_against_the_threshold():
    steps = [RandomisationStep("head", 0.95, 0.9), RandomisationStep("conv1", 0.31, 0.2)]
    verdict = randomisation_verdict({"guided_backprop": steps})["guided_backprop"]
    assert verdict.passes is True and verdict.correlation == pytest.approx(0.31) and "0.31" in verdict.reason
    fails = randomisation_verdict({"guided_backprop": steps}, threshold=0.3)["guided_backprop"]
    assert fails.passes is False and "0.31" in fails.reason
    flat = randomisation_verdict({"grad_cam": [RandomisationStep("head", float("nan"), float("nan"))]})["grad_cam"]
    assert flat.passes is None and "flat" in flat.reason
    with pytest.raises(ValueError, match="threshold"):
        randomisation_verdict({"saliency": steps}, threshold=1.5)
    with pytest.raises(ValueError, match="Unknown saliency method"):
        randomisation_verdict({"gradients": steps})
