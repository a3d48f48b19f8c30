"""Helpers every part of the lab shares for running a model on image tensors: eval mode that is given back, batched
predictions, and gradients with respect to the input only."""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F


@contextmanager
def eval_mode(model):
    """``model`` in eval mode (batch-norm statistics frozen, no dropout) inside the block, and in the mode it came in
    after it, also when the block raises. Yields the model."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def predict(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The predicted class of each image of ``x`` (int64, on x's device), in passes of ``batch_size`` images, under the
    model's current mode."""
    if not len(x):
        return torch.empty(0, dtype=torch.long, device=x.device)
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def input_gradient(loss_fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-example loss, d loss.sum() / d x): gradients reach x only, never the parameters' .grad."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(x)
        (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), grad.detach()


def ce_loss(model, y, target=None):
    """Per-example loss to ascend: cross-entropy on y, or minus cross-entropy on the target."""
    if target is None:
        return lambda x: F.cross_entropy(model(x), y, reduction="none")
    return lambda x: -F.cross_entropy(model(x), target, reduction="none")


__all__ = ["ce_loss", "eval_mode", "input_gradient", "predict"]
