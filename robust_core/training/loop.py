"""The training loop: one for every method, whole dataset in memory, batched on the device."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DatasetSplits, load_dataset
from ..device import get_device, resolve_precision
from ..models import FittedBaseline, architecture, build_model
from ..tensors import eval_mode
from .config import TrainConfig
from .gfa import measure_alignment
from .losses import BatchContext, training_method

# How many batch-level progress events per epoch at most: enough for a smooth live curve,
# few enough that redrawing a chart never costs more than the training itself.
BATCH_EVENTS_PER_EPOCH = 50
ALIGNMENT_IMAGES = 2000
CHECK_IMAGES = 500


class TrainingCancelled(Exception):
    """Raised when ``should_stop()`` answered True between two batches."""


@dataclass
class ProgressEvent:
    kind: str  # "batch" or "epoch"
    epoch: int  # 1-based
    epochs: int
    batch: int  # batches done in this epoch
    batches_per_epoch: int
    elapsed_s: float
    eta_s: float
    train_loss: float  # running mean over this epoch so far
    train_acc: float
    lr: float
    val_loss: float | None = None
    val_acc: float | None = None
    # The model being trained (in train mode): read it, e.g. to evaluate after an epoch, never step it.
    model: Any = field(default=None, repr=False)

    @property
    def fraction(self) -> float:
        return ((self.epoch - 1) * self.batches_per_epoch + self.batch) / (self.epochs * self.batches_per_epoch)


@dataclass
class TrainResult:
    model: Any
    config: TrainConfig
    metrics: dict[str, float]
    history: dict[str, list] = field(default_factory=dict)
    wall_time_s: float = 0.0


@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on (x, y), computed in eval mode."""
    if isinstance(model, FittedBaseline):
        proba = model.predict_proba(x).clamp_min(1e-12)
        return {"loss": float(F.nll_loss(proba.log(), y.to(proba.device))),
                "acc": float((proba.argmax(1).cpu() == y.cpu()).float().mean())}
    device = next(model.parameters()).device
    total_loss, correct = 0.0, 0
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            logits = model(xb)
            total_loss += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    return {"loss": total_loss / len(x), "acc": correct / len(x)}


def _optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    momentum = config.momentum if config.optimizer == "sgd_momentum" else 0.0
    return torch.optim.SGD(params, lr=config.lr, momentum=momentum, nesterov=momentum > 0,
                           weight_decay=config.weight_decay)


def _scheduler(config: TrainConfig, optimizer, total_steps: int):
    if config.schedule == "onecycle":
        # Short warm-up then cosine decay to ~0: the fastest reliable way to a good MNIST model in 1-2 epochs.
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.15)
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.schedule == "step":
        # Divide by 10 at 50% and 75% of training, the classic recipe.
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [total_steps // 2, total_steps * 3 // 4], gamma=0.1)
    return None


def training_data(config: TrainConfig, data: DatasetSplits | None = None) -> DatasetSplits:
    data = data or load_dataset(config.dataset)
    if data.info.name != config.dataset:
        raise ValueError(f"config is for {config.dataset!r} but the data given is {data.info.name!r}")
    return data


def train_model(
    config: TrainConfig,
    *,
    data: DatasetSplits | None = None,
    device: torch.device | str | None = None,
    on_progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a fresh model from ``config`` and return it in eval mode with its metrics and curves.

    ``on_progress`` receives batch events (at most ~50 per epoch) and one event per epoch with
    validation metrics; ``should_stop`` is polled between batches and ends training with
    :class:`TrainingCancelled`. Deterministic on CPU for a given config (same thread count).
    """
    data = training_data(config, data)
    device = torch.device(device) if device is not None else get_device()
    start = time.perf_counter()
    if architecture(config.arch).kind == "fitted":
        return _fit_baseline(config, data, start)

    train_x, train_y = data.train_x, data.train_y
    if config.train_subset is not None:
        train_x, train_y = train_x[: config.train_subset], train_y[: config.train_subset]
    train_x, train_y = train_x.to(device), train_y.to(device)
    val_x, val_y = data.val_x.to(device), data.val_y.to(device)

    torch.manual_seed(config.seed)
    arch_kwargs = dict(config.arch_kwargs)
    if config.dropout:
        arch_kwargs["dropout"] = config.dropout
    model: nn.Module = build_model(config.arch, config.dataset, **arch_kwargs).to(device)
    precision = resolve_precision(config.precision, device)
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        # NHWC layout: oneDNN's (and cuDNN's) fast convolution kernels want it; 1.2-1.3x on CPU here.
        model = model.to(memory_format=torch.channels_last)
        train_x = train_x.contiguous(memory_format=torch.channels_last)
    # Mixed precision: matmuls and convolutions in bf16, weights, optimiser state and loss in fp32.
    # bf16 keeps fp32's exponent range, so unlike fp16 it needs no loss scaling.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    loss_fn = training_method(config.method)
    optimizer = _optimizer(config, model.parameters())
    n = len(train_x)
    batches_per_epoch = math.ceil(n / config.batch_size)
    total_steps = batches_per_epoch * config.epochs
    scheduler = _scheduler(config, optimizer, total_steps)
    # Shuffling from its own generator keeps the data order a function of the seed alone.
    order_rng = torch.Generator().manual_seed(config.seed)
    event_every = max(1, batches_per_epoch // BATCH_EVENTS_PER_EPOCH)

    history: dict[str, list] = {k: [] for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                                                "elapsed_s")}
    history["batches"] = []  # (fractional epoch, running train loss, running train acc)
    extras_history: dict[str, list[float]] = {}
    step = 0
    model.train()
    for epoch in range(config.epochs):
        perm = torch.randperm(n, generator=order_rng).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        extras_sum: dict[str, float] = {}
        for b in range(batches_per_epoch):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"stopped at epoch {epoch + 1}, batch {b}")
            idx = perm[b * config.batch_size : (b + 1) * config.batch_size]
            xb, yb = train_x[idx], train_y[idx]
            ctx = BatchContext(config.method_kwargs, epoch, step / total_steps, config.label_smoothing, step,
                               config.seed)
            with autocast:
                out = loss_fn(model, xb, yb, ctx)
            if not torch.isfinite(out.loss):
                raise FloatingPointError(
                    f"Training diverged: the loss became {float(out.loss.detach())} at epoch {epoch + 1}, "
                    f"batch {b + 1}. "
                    "Lower the learning rate."
                )
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            # Accumulate on the device; a .item() per batch would synchronise a GPU every step.
            loss_sum += out.loss.detach() * len(yb)
            correct += (out.logits.detach().argmax(1) == yb).sum()
            seen += len(yb)
            for k, v in out.extras.items():
                extras_sum[k] = extras_sum.get(k, 0.0) + float(v) * len(yb)
            if (b + 1) % event_every == 0 or b + 1 == batches_per_epoch:
                # The curve is stored whether or not anyone is watching: the Train page draws it later.
                running_loss, running_acc = float(loss_sum) / seen, float(correct) / seen
                history["batches"].append((epoch + (b + 1) / batches_per_epoch, running_loss, running_acc))
            if on_progress is not None and ((b + 1) % event_every == 0 or b + 1 == batches_per_epoch):
                elapsed = time.perf_counter() - start
                on_progress(ProgressEvent(
                    "batch", epoch + 1, config.epochs, b + 1, batches_per_epoch, elapsed,
                    elapsed / step * (total_steps - step), running_loss, running_acc, optimizer.param_groups[0]["lr"],
                    model=model,
                ))
        val = evaluate(model, val_x, val_y)
        model.train()
        elapsed = time.perf_counter() - start
        for key, value in (("epoch", epoch + 1), ("train_loss", float(loss_sum) / seen),
                           ("train_acc", float(correct) / seen), ("val_loss", val["loss"]), ("val_acc", val["acc"]),
                           ("lr", optimizer.param_groups[0]["lr"]), ("elapsed_s", elapsed)):
            history[key].append(value)
        for k, v in extras_sum.items():
            extras_history.setdefault(k, []).append(v / seen)
        if on_progress is not None:
            on_progress(ProgressEvent(
                "epoch", epoch + 1, config.epochs, batches_per_epoch, batches_per_epoch, elapsed,
                elapsed / step * (total_steps - step), history["train_loss"][-1], history["train_acc"][-1],
                optimizer.param_groups[0]["lr"], val["loss"], val["acc"], model=model,
            ))
    history.update(extras_history)
    model.eval()
    wall = time.perf_counter() - start
    test = evaluate(model, data.test_x, data.test_y)
    metrics = {"test_acc": test["acc"], "test_loss": test["loss"], "val_acc": history["val_acc"][-1],
               "val_loss": history["val_loss"][-1], "train_acc": history["train_acc"][-1]}
    # A fixed, tiny check set: a shipped or imported model can prove it still predicts as it did.
    metrics["test_acc_first500"] = evaluate(model, data.test_x[:CHECK_IMAGES], data.test_y[:CHECK_IMAGES])["acc"]
    if hasattr(model, "forward_with_features"):
        # Every network records its gradient-feature alignment (mean |cos| per layer), so GFA's effect
        # can be compared with any other method's. 2,000 test images: ~1 s on CPU, stable to ~0.01.
        alignment = measure_alignment(model, data.test_x[:ALIGNMENT_IMAGES].to(device),
                                      data.test_y[:ALIGNMENT_IMAGES].to(device))
        metrics.update({f"alignment_{name}": value for name, value in alignment.items()})
    history["precision"] = precision
    return TrainResult(model.to(memory_format=torch.contiguous_format), config, metrics, history, wall)


def _fit_baseline(config: TrainConfig, data: DatasetSplits, start: float) -> TrainResult:
    model = build_model(config.arch, config.dataset, **{**config.arch_kwargs, "seed": config.seed})
    x, y = data.train_x, data.train_y
    if config.train_subset is not None:
        x, y = x[: config.train_subset], y[: config.train_subset]
    model.fit(x, y)
    wall = time.perf_counter() - start
    val, test = evaluate(model, data.val_x, data.val_y), evaluate(model, data.test_x, data.test_y)
    metrics = {"test_acc": test["acc"], "test_loss": test["loss"], "val_acc": val["acc"], "val_loss": val["loss"]}
    return TrainResult(model, config, metrics, {}, wall)
