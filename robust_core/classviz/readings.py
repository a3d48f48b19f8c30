"""What other classifiers read in a morphed image: the measurable meaning of "it looks like a 9".

A morph maximises one model's probability; whether the picture *shows* the class is a question for
classifiers that were not optimised against: the other models, and the k-NN baseline, which only
compares pixels with the training images.
"""
from __future__ import annotations

import torch


def knn_read(images: torch.Tensor, train_x: torch.Tensor, train_y: torch.Tensor, *, k: int = 3,
             num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k-NN baseline's reading of ``images`` (N, C, H, W): (class (N,), share of the k nearest training
    images in that class (N,)). Ties go to the nearest neighbour's class among the tied ones."""
    if k < 1:
        raise ValueError("k must be >= 1")
    flat_train = train_x.flatten(1).to(images.device, images.dtype)
    # Squared distances up to each image's own norm (which does not change its ranking): ||t||^2 - 2 x.t, one matrix
    # product. torch.cdist builds a (train, D + 2) copy of the training set per call (0.2 s for MNIST's, 10x this).
    train_norms = torch.linalg.vector_norm(flat_train, dim=1).square()
    distances = (images.flatten(1) @ flat_train.T).mul_(-2).add_(train_norms)
    nearest = distances.topk(k, largest=False).indices  # (N, k), nearest first
    votes = train_y.to(images.device)[nearest]
    classes = int(num_classes or int(train_y.max()) + 1)
    counts = torch.zeros(len(images), classes, device=images.device).scatter_add_(
        1, votes, torch.ones_like(votes, dtype=torch.float))
    # The nearest neighbour breaks ties: add less than one vote to its class.
    counts.scatter_add_(1, votes[:, :1], torch.full((len(images), 1), 0.5, device=images.device))
    winner = counts.argmax(1)
    return winner.cpu(), ((votes == winner[:, None]).float().mean(1)).cpu()


def readings(images: torch.Tensor, models: dict, *, train_x: torch.Tensor | None = None,
             train_y: torch.Tensor | None = None, k: int = 3) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each classifier's reading of ``images``: {name: (predicted class (N,), its probability (N,))}, the networks
    of ``models`` (name -> model, used in eval mode and restored) and, with the training set, "k-NN (k=3)"."""
    from ..models import predict_proba

    out = {}
    for name, model in models.items():
        p = predict_proba(model, images).cpu()
        out[name] = (p.argmax(1), p.amax(1))
    if train_x is not None and train_y is not None:
        out[f"k-NN (k={k})"] = knn_read(images.cpu(), train_x, train_y, k=k)
    return out
