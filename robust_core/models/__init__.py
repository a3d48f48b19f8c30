"""Registry of model constructors (RobustBench style): a name builds a model for a dataset."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data import dataset_info
from ..tensors import eval_mode
from .baselines import KNNBaseline, LogisticRegressionBaseline, FittedBaseline
from .networks import ACTIVATIONS, ImageClassifier, mlp, seed_cnn
from .residual import preact_resnet18, wide_resnet


@dataclass(frozen=True)
class Architecture:
    name: str
    title: str
    kind: str  # "torch" (trained by gradient descent) or "fitted" (logistic regression, k-NN)
    description: str
    builder: Callable[..., Any]
    fixed_kwargs: dict[str, Any] = field(default_factory=dict)


def _cnn(name: str, title: str, description: str, **fixed) -> Architecture:
    """A seed-CNN variant; ``fixed`` (its ablation) is kept in ``fixed_kwargs`` too, for the size estimates of
    :mod:`robust_core.models.size`."""
    def builder(info, **kw) -> ImageClassifier:
        return seed_cnn(info.shape, info.num_classes, info.mean, info.std, **{**fixed, **kw})
    return Architecture(name, title, "torch", description, builder, dict(fixed))


def _residual(name: str, title: str, description: str, **fixed) -> Architecture:
    def builder(info, **kw) -> ImageClassifier:
        return wide_resnet(info.shape, info.num_classes, info.mean, info.std, **{**fixed, **kw})
    return Architecture(name, title, "torch", description, builder, dict(fixed))


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in [
        _cnn("cnn", "Seed CNN",
             "Conv 32@3x3, pool, conv 64@3x3, pool, dense 128, dense 10"),
        _cnn("cnn_no_conv2", "CNN without 2nd conv",
             "Ablation: the second convolution block removed", conv2=False),
        _cnn("cnn_no_pool1", "CNN without 1st pooling",
             "Ablation: no max-pooling after the first convolution", pool1=False),
        _cnn("cnn_dense64", "CNN with dense 64",
             "Ablation: dense layer of 64 units instead of 128", dense=64),
        _cnn("cnn_small", "CNN with 16/32 filters",
             "Ablation: half the filters in each convolution", filters=(16, 32)),
        _cnn("cnn_no_dense", "CNN without dense 128",
             "Ablation: flatten straight into the 10-way output", dense=0),
        _cnn("cnn_madry", "Madry et al.'s MNIST CNN",
             "Conv 32@5x5 (same), pool, conv 64@5x5 (same), pool, dense 1024, dense 10: the network of "
             "Madry et al. 2018's MNIST challenge (3.3 M parameters)", kernel=5, padding=2, dense=1024),
        Architecture("mlp", "MLP", "torch",
                     "Fully connected network; hidden sizes, activation and dropout configurable",
                     lambda info, **kw: mlp(info.shape, info.num_classes, info.mean, info.std, **kw)),
        Architecture("preact_resnet18", "PreAct ResNet-18", "torch",
                     "He et al. 2016's pre-activation ResNet-18 (11.2 M parameters on CIFAR-10): the network of "
                     "Wong et al. 2020's and Rice et al. 2020's CIFAR-10 adversarial training; GPU work",
                     lambda info, **kw: preact_resnet18(info.shape, info.num_classes, info.mean, info.std, **kw)),
        _residual("wrn_16_4", "WideResNet-16-4",
                  "Zagoruyko & Komodakis 2016's WRN-16-4 (2.7 M parameters): a CIFAR-10 WideResNet a CPU trains",
                  depth=16, widen=4),
        _residual("wrn_28_10", "WideResNet-28-10",
                  "WRN-28-10 (36.5 M parameters): Madry et al.'s CIFAR-10 network and most RobustBench entries'; "
                  "GPU work", depth=28, widen=10),
        Architecture("logreg", "Logistic regression", "fitted",
                     "Multinomial logistic regression on raw pixels (L-BFGS in PyTorch, scikit-learn's objective)",
                     lambda info, **kw: LogisticRegressionBaseline(info.num_classes, **kw)),
        Architecture("knn", "k-NN (k=3)", "fitted",
                     "k-nearest neighbours on raw pixels, Euclidean (brute force in PyTorch)",
                     lambda info, **kw: KNNBaseline(info.num_classes, **kw)),
    ]
}


def architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"Unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}") from None


def build_model(arch: str, dataset: str, **kwargs):
    """A freshly initialised model of architecture ``arch`` for ``dataset`` (uses the global torch RNG)."""
    spec = architecture(arch)
    return spec.builder(dataset_info(dataset), **kwargs)


def parameter_count(model) -> int | None:
    if isinstance(model, nn.Module):
        return sum(p.numel() for p in model.parameters())
    return model.parameter_count()


@torch.no_grad()
def predict_proba(model, x: torch.Tensor, *, batch_size: int = 1000) -> torch.Tensor:
    """Class probabilities (N, K) for networks (softmax of logits) and baselines alike, on x's device."""
    if isinstance(model, FittedBaseline):
        return model.predict_proba(x)
    with eval_mode(model):
        device = next(model.parameters()).device
        out = [torch.softmax(model(x[i : i + batch_size].to(device)), dim=1) for i in range(0, len(x), batch_size)]
        return torch.cat(out).to(x.device)


__all__ = [
    "ACTIVATIONS", "ARCHITECTURES", "Architecture", "ImageClassifier", "KNNBaseline",
    "LogisticRegressionBaseline", "FittedBaseline", "architecture", "build_model",
    "parameter_count", "predict_proba",
]
