"""The shared model helpers (robust_core.tensors) and the per-norm ε ceiling (robust_core.attacks.eps_ceiling)."""
import math

import pytest
import torch
from torch import nn

from robust_core.attacks import ATTACKS, eps_ceiling
from robust_core.sweep import SweepError, check_eps
from robust_core.tensors import ce_loss, eval_mode, input_gradient, predict


def _net(shape) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(math.prod(shape), 10))


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_gives_the_model_back_in_its_mode_even_when_the_block_raises(training):
    net = _net((1, 4, 4)).train(training)
    with eval_mode(net) as inside:
        assert inside is net and not net.training and not net[1].training
    assert net.training is training and net[1].training is training
    with pytest.raises(RuntimeError, match="inside"):
        with eval_mode(net):
            raise RuntimeError("inside")
    assert net.training is training and net[1].training is training


def test_predict_and_input_gradient_touch_neither_the_mode_nor_the_parameters():
    net = _net((1, 4, 4)).eval()
    x, y = torch.rand(5, 1, 4, 4), torch.arange(5)
    assert torch.equal(predict(net, x, batch_size=2), net(x).argmax(1))
    assert predict(net, x[:0]).shape == (0,) and predict(net, x[:0]).dtype == torch.long
    loss, grad = input_gradient(ce_loss(net, y), x)
    assert loss.shape == (5,) and grad.shape == x.shape and grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())
    target_loss, _ = input_gradient(ce_loss(net, y, target=(y + 1) % 10), x)
    assert (target_loss <= 0).all()  # minus the cross-entropy on the target: a loss to ascend


def test_the_eps_ceiling_is_the_largest_distance_between_two_images_of_that_size():
    assert eps_ceiling("linf", (1, 28, 28)) == 1.0 and eps_ceiling("linf", (3, 32, 32)) == 1.0
    assert eps_ceiling("l2", (1, 28, 28)) == 28.0 and eps_ceiling("l1", (1, 28, 28)) == 784.0  # MNIST's, unchanged
    assert eps_ceiling("l2", (3, 32, 32)) == pytest.approx(55.43, abs=0.01) and eps_ceiling("l1", (3, 32, 32)) == 3072
    black, white = torch.zeros(3, 32, 32), torch.ones(3, 32, 32)
    assert float((white - black).norm()) == pytest.approx(eps_ceiling("l2", black.shape))
    with pytest.raises(ValueError, match="norm must be one of"):
        eps_ceiling("l3", (1, 28, 28))


def test_a_32x32_colour_image_accepts_an_l2_eps_of_40_and_mnist_keeps_its_ceiling_of_28():
    colour, grey = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 28, 28)
    y = torch.tensor([0, 1])
    attack = ATTACKS["pgd_l2"]
    x_adv = attack(_net((3, 32, 32)).eval(), colour, y, eps=40.0, steps=2, seed=0)
    assert x_adv.shape == colour.shape and float((x_adv - colour).flatten(1).norm(dim=1).max()) <= 40.0 + 1e-4
    attack(_net((1, 28, 28)).eval(), grey, y, eps=28.0, steps=1, seed=0)  # the ceiling itself is allowed
    with pytest.raises(ValueError, match="larger than any"):
        attack(_net((1, 28, 28)).eval(), grey, y, eps=28.5, steps=1, seed=0)
    # The sweep's check: the same ceilings, from the datasets of the models it evaluates.
    assert check_eps([40.0], ["pgd_l2"], ["cifar10"]) == [40.0]
    assert check_eps([3000.0], ["fab_l1"], ["cifar10"]) == [3000.0]
    assert check_eps([28.0], ["pgd_l2"], ["mnist"]) == [28.0]
    with pytest.raises(SweepError, match="between 0 and 28"):
        check_eps([40.0], ["pgd_l2"], ["mnist"])
    with pytest.raises(SweepError, match="between 0 and 28"):
        check_eps([40.0], ["pgd_l2"], ["cifar10", "mnist"])  # every model's images must allow it
