"""Networks the lab did not train, as a researcher's own code would define them (imported by factory in the tests of
robust_core.external): a Fashion-MNIST MLP with LayerNorm, a shape the model registry does not have, and one network
per import check that must fail."""
from __future__ import annotations

import torch
from torch import nn

# Fashion-MNIST's pixel statistics, held by the network as the lab's own networks hold theirs.
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


class LayerNormMLP(nn.Module):
    def __init__(self, hidden: int = 64):
        super().__init__()
        self.register_buffer("mean", torch.tensor(FASHION_MEAN))
        self.register_buffer("std", torch.tensor(FASHION_STD))
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.LayerNorm(hidden), nn.ReLU(),
                                  nn.Linear(hidden, 10))

    def forward(self, x):
        return self.body((x - self.mean) / self.std)


def build(hidden: int = 64) -> nn.Module:
    """The factory the CLI is given: ``--model-factory tests.external_models:build``."""
    return LayerNormMLP(hidden)


class ColourInput(LayerNormMLP):
    """Expects 3-channel 32×32 images: the wrong shape for Fashion-MNIST."""

    def __init__(self):
        super().__init__()
        self.body[1] = nn.Linear(3 * 32 * 32, 64)


class SoftmaxOutput(LayerNormMLP):
    def forward(self, x):
        return torch.softmax(super().forward(x), dim=1)


class WithDropout(nn.Module):
    """Dropout that the lab must switch off (eval mode); given in train mode."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))

    def forward(self, x):
        return self.body(x)


class NoisyForward(LayerNormMLP):
    """A randomised defence: Gaussian noise on the input at every pass, in eval mode too."""

    def forward(self, x):
        return super().forward(x + 0.5 * torch.randn_like(x))


class InPlaceNormalisation(LayerNormMLP):
    def forward(self, x):
        x.sub_(self.mean).div_(self.std)
        return self.body(x)
