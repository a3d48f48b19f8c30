"""A k-NN morph: no gradient, a direction from neighbours, random masking."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KNNMorphResult:
    frames: torch.Tensor  # (T, C, H, W)
    pseudo_probability: list[float]  # share of the k nearest training images in the target class, per frame
    final: torch.Tensor
    steps_run: int


def knn_morph(train_x: torch.Tensor, train_y: torch.Tensor, start: torch.Tensor, target: int, *, k: int = 5,
              lr: float = 0.1, mask_share: float = 0.3, threshold: float = 0.6, steps: int = 200,
              seed: int = 0) -> KNNMorphResult:
    """Move ``start`` (C, H, W) until the share of its k nearest training images in ``target`` reaches ``threshold``.

    Direction: towards the k nearest target-class training images and away from the k
    nearest neighbours of other classes, mean of the differences; only a random ``mask_share`` of the
    pixels move at each step (random masking), x <- clip(x - lr * direction). Each step computes the
    distances to every training image (a (1, N) cdist): the cost of going without gradients.
    """
    g = torch.Generator().manual_seed(seed)
    flat_train = train_x.flatten(1)
    x = start.detach().reshape(1, -1).clone()
    in_target = train_y == target
    target_x, other_x = flat_train[in_target], flat_train[~in_target]
    frames, pseudo = [x.clone()], []
    steps_run = 0
    for step in range(steps + 1):
        d = torch.cdist(x, flat_train)[0]
        pseudo.append(float((train_y[d.topk(k, largest=False).indices] == target).float().mean()))
        if pseudo[-1] >= threshold or step == steps:
            break
        near_target = target_x[torch.cdist(x, target_x)[0].topk(k, largest=False).indices]
        near_other = other_x[torch.cdist(x, other_x)[0].topk(k, largest=False).indices]
        # x - X_j for a target neighbour is descended (x moves toward it); for another class, ascended.
        direction = (x - near_target).mean(0) - (x - near_other).mean(0)
        mask = (torch.rand(direction.shape, generator=g) < mask_share).to(x.dtype).to(x.device)
        x = (x - lr * direction * mask).clamp(0, 1)
        frames.append(x.clone())
        steps_run += 1
    shape = start.shape[-3:]
    stacked = torch.stack([f.view(*shape) for f in frames])
    return KNNMorphResult(stacked, pseudo, stacked[-1], steps_run)
