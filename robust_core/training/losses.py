"""Per-batch training objectives, pluggable by name.

A method is a function ``loss(model, x, y, ctx) -> BatchLoss``: it may craft inputs (adversarial
training), add penalties (gradient regularisers), and it reports the logits on which the
training accuracy is measured. The loop owns everything else (optimiser, schedule, data order).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class BatchContext:
    """What a method may need besides the batch: its own keyword arguments and where training is."""

    method_kwargs: dict[str, Any]
    epoch: int  # 0-based
    progress: float  # fraction of all training steps done, in [0, 1)
    label_smoothing: float = 0.0


@dataclass
class BatchLoss:
    loss: torch.Tensor
    logits: torch.Tensor  # logits used for the training accuracy shown in the curves
    extras: dict[str, float] = field(default_factory=dict)  # e.g. penalty values, logged per epoch


LossFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, BatchContext], BatchLoss]


def standard_loss(model, x, y, ctx: BatchContext) -> BatchLoss:
    """Cross-entropy on clean inputs (with optional label smoothing)."""
    logits = model(x)
    return BatchLoss(F.cross_entropy(logits, y, label_smoothing=ctx.label_smoothing), logits)


TRAINING_METHODS: dict[str, LossFn] = {"standard": standard_loss}
METHOD_TITLES: dict[str, str] = {"standard": "Standard (cross-entropy)"}


def training_method(name: str) -> LossFn:
    try:
        return TRAINING_METHODS[name]
    except KeyError:
        raise ValueError(f"Unknown training method {name!r}; choose one of {sorted(TRAINING_METHODS)}") from None
