"""Residual networks of the robustness literature, for 32×32 colour images (CIFAR-10) and the digit datasets alike.

- :func:`preact_resnet18`: He et al. 2016, "Identity Mappings in Deep Residual Networks" (pre-activation blocks),
  as Wong et al. 2020 and Rice et al. 2020 train it for adversarial robustness on CIFAR-10: 11.2 M parameters.
- :func:`wide_resnet`: Zagoruyko & Komodakis 2016, "Wide Residual Networks", WRN-``depth``-``widen``: WRN-28-10
  (36.5 M parameters) is the network of Madry et al.'s CIFAR-10 challenge and of most RobustBench entries;
  WRN-16-4 (2.7 M) trains on a CPU.

Both are :class:`~robust_core.models.networks.ImageClassifier`\\ s: images in [0, 1], the dataset's normalisation
inside, logits out, and named blocks (``stem``, ``stage1`` … , ``head``) whose outputs layer-wise methods read
(Gradient-Feature Alignment, Grad-CAM). The head pools globally, so any image size of at least 8×8 works.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from .networks import ImageClassifier, Normalize


class PreActBlock(nn.Module):
    """BN-ReLU-conv3×3-BN-ReLU-conv3×3, plus the input (through a 1×1 convolution of the first activation where the
    shape changes, as He et al.'s pre-activation design does). ``dropout`` between the two convolutions (WRN)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.shortcut = (nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
                         if stride != 1 or in_channels != out_channels else None)

    def forward(self, x):
        out = nn.functional.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(nn.functional.relu(self.bn2(out))))
        return out + skip


def _stage(in_channels: int, out_channels: int, blocks: int, stride: int, dropout: float = 0.0) -> nn.Sequential:
    layers = [PreActBlock(in_channels, out_channels, stride, dropout)]
    layers += [PreActBlock(out_channels, out_channels, 1, dropout) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _head(channels: int, num_classes: int) -> nn.Sequential:
    """The last blocks' activation (pre-activation networks end un-normalised), global average pooling, the logits."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(channels, num_classes))


def _check_image(shape: Sequence[int]) -> None:
    if len(shape) != 3 or min(shape[1:]) < 8:
        raise ValueError(f"residual networks take (channels, height, width) images of at least 8×8, not {tuple(shape)}")


def preact_resnet18(shape: Sequence[int], num_classes: int, mean: Sequence[float], std: Sequence[float], *,
                    width: int = 64) -> ImageClassifier:
    """PreAct ResNet-18: a 3×3 stem of ``width`` channels, four stages of two blocks (width, 2, 4, 8× ``width``;
    strides 1, 2, 2, 2), the head (with the final batch norm of Wong et al.'s and Rice et al.'s code): 11,172,170
    parameters at width 64 on CIFAR-10."""
    _check_image(shape)
    widths = [width, 2 * width, 4 * width, 8 * width]
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    blocks["stem"] = nn.Conv2d(shape[0], width, 3, padding=1, bias=False)
    channels = width
    for i, (out_channels, stride) in enumerate(zip(widths, (1, 2, 2, 2))):
        blocks[f"stage{i + 1}"] = _stage(channels, out_channels, 2, stride)
        channels = out_channels
    blocks["head"] = _head(channels, num_classes)
    return ImageClassifier(Normalize(mean, std), blocks)


def wide_resnet(shape: Sequence[int], num_classes: int, mean: Sequence[float], std: Sequence[float], *,
                depth: int = 28, widen: int = 10, dropout: float = 0.0) -> ImageClassifier:
    """WRN-``depth``-``widen``: a 3×3 stem of 16 channels, three stages of (depth − 4) / 6 blocks of 16, 32 and
    64 × ``widen`` channels (strides 1, 2, 2), the head."""
    _check_image(shape)
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"a WideResNet's depth is 6n + 4 (10, 16, 22, 28, 34, 40 …), not {depth}")
    if widen < 1:
        raise ValueError(f"a WideResNet's widening factor is a positive integer, not {widen}")
    per_stage = (depth - 4) // 6
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    blocks["stem"] = nn.Conv2d(shape[0], 16, 3, padding=1, bias=False)
    channels = 16
    for i, (out_channels, stride) in enumerate(zip((16 * widen, 32 * widen, 64 * widen), (1, 2, 2))):
        blocks[f"stage{i + 1}"] = _stage(channels, out_channels, per_stage, stride, dropout)
        channels = out_channels
    blocks["head"] = _head(channels, num_classes)
    return ImageClassifier(Normalize(mean, std), blocks)
