"""PyTorch classifiers: the seed CNN with its ablations, and an MLP.

Every network takes images in [0, 1] and returns logits; the dataset's normalisation is a
buffer inside the model, so attacks and saliency work in pixel space with no wrapper.
The body is a sequence of named blocks, each ending after its activation, so that
layer-wise methods (Gradient-Feature Alignment, Grad-CAM) can read each block's features.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


class Normalize(nn.Module):
    """(x - mean) / std per channel, with the statistics stored in the checkpoint."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ImageClassifier(nn.Module):
    """``normalize`` then named ``blocks``; the last block is the linear head returning logits."""

    def __init__(self, normalize: Normalize, blocks: "OrderedDict[str, nn.Module]"):
        super().__init__()
        self.normalize = normalize
        self.blocks = nn.Sequential(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.normalize(x))

    @property
    def feature_block_names(self) -> list[str]:
        """Blocks whose outputs are hidden features (all but the head)."""
        return list(self.blocks._modules)[:-1]

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the list [normalised input, output of each hidden block]."""
        h = self.normalize(x)
        features = [h]
        modules = list(self.blocks)
        for block in modules[:-1]:
            h = block(h)
            features.append(h)
        return modules[-1](h), features


def _flat_size(blocks: "OrderedDict[str, nn.Module]", shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return nn.Sequential(blocks)(torch.zeros(1, *shape)).flatten(1).shape[1]


def seed_cnn(
    shape: tuple[int, int, int],
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    filters: tuple[int, int] = (32, 64),
    conv2: bool = True,
    pool1: bool = True,
    dense: int = 128,
    dropout: float = 0.0,
    kernel: int = 3,
    padding: int = 0,
) -> ImageClassifier:
    """The seed CNN and its ablations through the keyword arguments.

    Default: Conv 32@3x3 -> MaxPool 2 -> Conv 64@3x3 -> MaxPool 2 -> Flatten 1600 -> Dense 128 ReLU
    -> Dense 10, 225,034 parameters on MNIST.
    """
    channels = shape[0]
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    first = [nn.Conv2d(channels, filters[0], kernel, padding=padding), nn.ReLU()]
    if pool1:
        first.append(nn.MaxPool2d(2))
    blocks["conv1"] = nn.Sequential(*first)
    if conv2:
        blocks["conv2"] = nn.Sequential(nn.Conv2d(filters[0], filters[1], kernel, padding=padding), nn.ReLU(),
                                        nn.MaxPool2d(2))
    flat = _flat_size(blocks, shape)
    if dense:
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(flat, dense), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        blocks["dense"] = nn.Sequential(*layers)
        blocks["head"] = nn.Linear(dense, num_classes)
    else:
        head: list[nn.Module] = [nn.Flatten()] + ([nn.Dropout(dropout)] if dropout else [])
        blocks["head"] = nn.Sequential(*head, nn.Linear(flat, num_classes))
    return ImageClassifier(Normalize(mean, std), blocks)


def mlp(
    shape: tuple[int, int, int],
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    hidden: Sequence[int] = (512, 256),
    activation: str = "relu",
    dropout: float = 0.0,
) -> ImageClassifier:
    """A fully connected network: Flatten -> [Linear -> activation -> Dropout] x len(hidden) -> Linear."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    width = shape[0] * shape[1] * shape[2]
    for i, units in enumerate(hidden):
        layers: list[nn.Module] = (([nn.Flatten()] if i == 0 else [])
                                   + [nn.Linear(width, units), ACTIVATIONS[activation]()])
        if dropout:
            layers.append(nn.Dropout(dropout))
        blocks[f"fc{i + 1}"] = nn.Sequential(*layers)
        width = units
    blocks["head"] = (nn.Sequential(nn.Flatten(), nn.Linear(width, num_classes)) if not hidden
                      else nn.Linear(width, num_classes))
    return ImageClassifier(Normalize(mean, std), blocks)
