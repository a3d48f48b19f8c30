"""Per-batch training objectives, pluggable by name.

A method is a function ``loss(model, x, y, ctx) -> BatchLoss``: it may craft inputs (adversarial
training), add penalties (gradient regularisers), and it reports the logits on which the
training accuracy is measured. The loop owns everything else (optimiser, schedule, data order).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import math

import torch
import torch.nn.functional as F

from ..tensors import eval_mode
from . import gfa as gfa_math


@dataclass
class BatchContext:
    """What a method may need besides the batch: its own keyword arguments and where training is."""

    method_kwargs: dict[str, Any]
    epoch: int  # 0-based
    progress: float  # fraction of all training steps done, in [0, 1)
    label_smoothing: float = 0.0
    step: int = 0  # optimiser steps done so far
    seed: int = 0  # the config's seed: methods that draw noise derive their generator from (seed, step)


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


# ---------------------------------------------------------------------------------------------
# Inner maximisation for adversarial training. Lean on purpose (no per-example bookkeeping, no
# early stop): training wants the loss maximised on every example, and this runs k times per batch.
# The model crafts in eval mode (no dropout noise in the attack) and trains in train mode.

def _generator(ctx: BatchContext) -> torch.Generator:
    # One generator per batch, seeded by the config seed and the step: training stays a function of the
    # config (deterministic on CPU) whatever the device.
    return torch.Generator().manual_seed(ctx.seed * 1_000_003 + ctx.step)


def _uniform(shape, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) * (high - low) + low).to(device)


def current_eps(kwargs: dict, ctx: BatchContext) -> float:
    """eps, ramped up linearly over the first ``eps_ramp`` fraction of training (0 = no ramp).

    A ramp lets a small network learn the task before it must resist eps = 0.3 (Madry's MNIST
    models, Gowal et al. 2018): without one, PGD training of the seed CNN can stall at chance.
    """
    eps, ramp = kwargs["eps"], kwargs.get("eps_ramp", 0.0)
    return eps * min(1.0, ctx.progress / ramp) if ramp > 0 else eps


def _input_grad(model, x_adv: torch.Tensor, loss_of_logits) -> torch.Tensor:
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(loss_of_logits(model(x_adv)), x_adv)
    return grad


def pgd_inner(model, x, y, *, eps: float, steps: int, step_size: float, random_start: bool,
              generator: torch.Generator, loss_of_logits=None) -> torch.Tensor:
    """L-inf PGD that maximises ``loss_of_logits`` (default: summed cross-entropy) for every example."""
    if eps <= 0:
        return x.detach()
    loss_of_logits = loss_of_logits or (lambda logits: F.cross_entropy(logits, y, reduction="sum"))
    with eval_mode(model):
        x_adv = (x + _uniform(x.shape, -eps, eps, generator, x.device)).clamp(0, 1) if random_start else x.detach()
        for _ in range(steps):
            grad = _input_grad(model, x_adv, loss_of_logits)
            x_adv = torch.min(torch.max(x_adv.detach() + step_size * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def fgsm_at_loss(model, x, y, ctx: BatchContext) -> BatchLoss:
    """FGSM adversarial training (Goodfellow, Shlens & Szegedy 2015).

    Loss = w * CE(x) + (1 - w) * CE(x + eps * sign(grad_x CE)), with w = ``clean_weight`` (0.5 in
    the paper). Known failure, kept on purpose so the app can show it: the model learns to make its
    own FGSM step useless (gradient masking, "catastrophic overfitting"), and PGD still breaks it.
    """
    k = ctx.method_kwargs
    eps = current_eps(k, ctx)
    with eval_mode(model):
        grad = _input_grad(model, x, lambda logits: F.cross_entropy(logits, y, reduction="sum"))
    x_adv = (x + eps * grad.sign()).clamp(0, 1).detach()
    return _mixed_ce(model, x, x_adv, y, k["clean_weight"], ctx, eps)


def fgsm_rs_at_loss(model, x, y, ctx: BatchContext) -> BatchLoss:
    """FGSM with a random start ("Fast is better than free", Wong, Rice & Kolter, ICLR 2020).

    delta ~ U(-eps, eps), one signed step of ``alpha`` * eps (1.25 in the paper), projected back to the
    eps-ball: nearly the price of standard training, far less prone to catastrophic overfitting.
    """
    k = ctx.method_kwargs
    eps = current_eps(k, ctx)
    g = _generator(ctx)
    start = (x + _uniform(x.shape, -eps, eps, g, x.device)).clamp(0, 1)
    with eval_mode(model):
        grad = _input_grad(model, start, lambda logits: F.cross_entropy(logits, y, reduction="sum"))
    x_adv = torch.min(torch.max(start + k["alpha"] * eps * grad.sign(), x - eps), x + eps).clamp(0, 1).detach()
    return _mixed_ce(model, x, x_adv, y, 0.0, ctx, eps)


def n_fgsm_at_loss(model, x, y, ctx: BatchContext) -> BatchLoss:
    """N-FGSM (de Jorge et al., NeurIPS 2022): stronger noise, no projection.

    delta ~ U(-k*eps, k*eps) with k = ``noise`` (2 in the paper), one signed step of eps, no clipping
    to the eps-ball (only to [0, 1]): the larger effective perturbation avoids catastrophic overfitting
    at the cost of a single gradient, like FGSM.
    """
    k = ctx.method_kwargs
    eps = current_eps(k, ctx)
    g = _generator(ctx)
    start = (x + _uniform(x.shape, -k["noise"] * eps, k["noise"] * eps, g, x.device)).clamp(0, 1)
    with eval_mode(model):
        grad = _input_grad(model, start, lambda logits: F.cross_entropy(logits, y, reduction="sum"))
    x_adv = (start + eps * grad.sign()).clamp(0, 1).detach()
    return _mixed_ce(model, x, x_adv, y, 0.0, ctx, eps)


def pgd_at_loss(model, x, y, ctx: BatchContext) -> BatchLoss:
    """PGD adversarial training (Madry et al., ICLR 2018): min_theta E max_{||d||_inf <= eps} CE(x + d).

    The inner maximisation is ``steps`` steps of L-inf PGD with a random start and step size
    ``step_size`` (default 2.5 * eps / steps); eps may ramp up (``eps_ramp``). Training accuracy in
    the curves is measured on the adversarial examples.
    """
    k = ctx.method_kwargs
    eps = current_eps(k, ctx)
    step_size = k["step_size"] if k.get("step_size") else 2.5 * eps / k["steps"]
    x_adv = pgd_inner(model, x, y, eps=eps, steps=k["steps"], step_size=step_size, random_start=True,
                      generator=_generator(ctx))
    return _mixed_ce(model, x, x_adv, y, 0.0, ctx, eps)


def trades_loss(model, x, y, ctx: BatchContext) -> BatchLoss:
    """TRADES (Zhang et al., ICML 2019): CE(f(x), y) + beta * KL(f(x) || f(x')).

    x' maximises the KL term inside the L-inf eps-ball (``steps`` PGD steps of ``step_size``, default
    eps / 4, from x + 0.001 * N(0, 1), as in the authors' code). beta trades accuracy for robustness
    (6 in the paper).
    """
    k = ctx.method_kwargs
    eps = current_eps(k, ctx)
    g = _generator(ctx)
    with eval_mode(model), torch.no_grad():
        p_clean = model(x).float().softmax(1)

    def kl_to_clean(logits):
        return F.kl_div(logits.float().log_softmax(1), p_clean, reduction="sum")

    start = (x + 0.001 * torch.randn(x.shape, generator=g).to(x.device)).clamp(0, 1)
    step_size = k["step_size"] if k.get("step_size") else eps / 4
    x_adv = pgd_inner(model, start, y, eps=eps, steps=k["steps"], step_size=step_size, random_start=False,
                      generator=g, loss_of_logits=kl_to_clean) if eps > 0 else x
    # pgd_inner projects around its own starting point; project around x itself to stay in the ball.
    x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1).detach()
    logits = model(x)
    adv_logits = model(x_adv)
    natural = F.cross_entropy(logits, y, label_smoothing=ctx.label_smoothing)
    robust = F.kl_div(adv_logits.float().log_softmax(1), logits.float().softmax(1), reduction="batchmean")
    return BatchLoss(natural + k["beta"] * robust, logits,
                     {"kl": float(robust.detach()), "eps": eps})


def gnr_loss(model, x, y, ctx: BatchContext) -> BatchLoss:
    """Input-gradient-norm regularisation (Ross & Doshi-Velez, AAAI 2018), "double backpropagation".

    Loss = CE + lambda * mean_i ||grad_x CE_i||_2^2, the gradient taken per example in pixel units and
    kept in the graph so that the penalty trains the weights.
    """
    k = ctx.method_kwargs
    x_in = x.detach().requires_grad_(True)
    logits = model(x_in)
    # Summed loss: each example's input gradient is then the gradient of its own loss.
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), x_in, create_graph=True)
    penalty = grad.float().flatten(1).pow(2).sum(1).mean()
    task = F.cross_entropy(logits, y, label_smoothing=ctx.label_smoothing)
    return BatchLoss(task + k["lam"] * penalty, logits, {"grad_norm_sq": float(penalty.detach())})


def gfa_loss(model, x, y, ctx: BatchContext) -> BatchLoss:
    """Gradient-Feature Alignment, DeepDefense (Lin et al., arXiv 2511.13749); see :mod:`.gfa`.

    Loss = task loss + lambda * L_GFA, L_GFA = mean over layers and batch of (1 - c_l^2). ``layers``:
    "first" (the input), "deep" (input and every hidden block) or a list of names; ``loss``: "ce" or
    "mse" (softmax vs one-hot, the paper's option); ``input_centre``: "model" (the dataset
    normalisation inside the model) or "pm1" (inputs rescaled to [-1, 1]); lambda is 0 for the first
    ``warmup_epochs`` epochs so the network first learns the task.
    """
    k = ctx.method_kwargs
    lam = k["lam"] if ctx.epoch >= k["warmup_epochs"] else 0.0
    if lam == 0.0:
        logits = model(x)
        task = gfa_math.task_loss(logits, y, k["loss"], ctx.label_smoothing)
        return BatchLoss(task, logits, {"gfa": float("nan")})
    logits, cosines, _ = gfa_math.alignment_cosines(model, x, y, layers=k["layers"], loss=k["loss"],
                                                    input_centre=k["input_centre"], create_graph=True,
                                                    label_smoothing=ctx.label_smoothing)
    task = gfa_math.task_loss(logits, y, k["loss"], ctx.label_smoothing)
    penalty = gfa_math.gfa_penalty(cosines)
    return BatchLoss(task + lam * penalty, logits,
                     {"gfa": float(penalty.detach()), "alignment": float(cosines.detach().abs().mean())})


def _mixed_ce(model, x, x_adv, y, clean_weight: float, ctx: BatchContext, eps: float) -> BatchLoss:
    adv_logits = model(x_adv)
    loss = F.cross_entropy(adv_logits, y, label_smoothing=ctx.label_smoothing)
    if clean_weight > 0:
        clean = F.cross_entropy(model(x), y, label_smoothing=ctx.label_smoothing)
        loss = clean_weight * clean + (1 - clean_weight) * loss
    return BatchLoss(loss, adv_logits, {"eps": eps})


# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MethodSpec:
    name: str
    title: str
    fn: LossFn
    defaults: dict[str, Any]
    paper: str = ""
    adversarial: bool = False  # training accuracy is measured on adversarial examples


_EPS = {"eps": 0.3, "eps_ramp": 0.0}
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("standard", "Standard (cross-entropy)", standard_loss, {}),
    MethodSpec("fgsm_at", "FGSM adversarial training", fgsm_at_loss, {**_EPS, "clean_weight": 0.5},
               "Goodfellow et al. 2015", True),
    MethodSpec("fgsm_rs_at", "FGSM + random start (Fast AT)", fgsm_rs_at_loss, {**_EPS, "alpha": 1.25},
               "Wong, Rice & Kolter 2020", True),
    MethodSpec("n_fgsm_at", "N-FGSM", n_fgsm_at_loss, {**_EPS, "noise": 2.0}, "de Jorge et al. 2022", True),
    MethodSpec("pgd_at", "PGD adversarial training", pgd_at_loss, {**_EPS, "steps": 10, "step_size": None},
               "Madry et al. 2018", True),
    MethodSpec("trades", "TRADES", trades_loss, {**_EPS, "steps": 10, "step_size": None, "beta": 6.0},
               "Zhang et al. 2019"),
    MethodSpec("gnr", "Gradient-norm regularisation", gnr_loss, {"lam": 1.0}, "Ross & Doshi-Velez 2018"),
    MethodSpec("gfa", "Gradient-Feature Alignment (DeepDefense)", gfa_loss,
               {"lam": 1.0, "layers": "deep", "loss": "ce", "input_centre": "model", "warmup_epochs": 0},
               "Lin et al. 2025, arXiv 2511.13749"),
)}
TRAINING_METHODS: dict[str, LossFn] = {name: spec.fn for name, spec in METHODS.items()}
METHOD_TITLES: dict[str, str] = {name: spec.title for name, spec in METHODS.items()}


def _number(value, name: str, low: float, high: float, *, integer: bool = False) -> list[str]:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or isinstance(value, bool) or not math.isfinite(value) or not (low <= value <= high):
        kind = "an integer" if integer else "a number"
        return [f"{name} must be {kind} in [{low}, {high}], not {value!r}"]
    return []


def method_kwargs_problems(method: str, kwargs: dict[str, Any]) -> list[str]:
    """What is wrong with a method's keyword arguments (empty list: nothing)."""
    spec = METHODS.get(method)
    if spec is None:
        return []  # the unknown method itself is reported by the config
    if not isinstance(kwargs, dict):
        return [f"method_kwargs must be a dict, not {type(kwargs).__name__}"]
    unknown = sorted(set(kwargs) - set(spec.defaults))
    problems = ([f"{method} takes no argument(s) {unknown}; it takes {sorted(spec.defaults) or 'none'}"] if unknown
                else [])
    if unknown:
        return problems
    k = {**spec.defaults, **kwargs}
    if "eps" in k:
        # 1.0 is already "any image": MNIST pixels are in [0, 1].
        problems += _number(k["eps"], "eps", 0.0, 1.0) + _number(k["eps_ramp"], "eps_ramp", 0.0, 1.0)
    if "steps" in k:
        problems += _number(k["steps"], "steps", 1, 1000, integer=True)
    if k.get("step_size") is not None:
        problems += _number(k["step_size"], "step_size", 1e-6, 1.0)
    for name, high in (("clean_weight", 1.0), ("alpha", 4.0), ("noise", 8.0), ("beta", 1e4), ("lam", 1e6)):
        if name in k:
            problems += _number(k[name], name, 0.0, high)
    if "warmup_epochs" in k:
        problems += _number(k["warmup_epochs"], "warmup_epochs", 0, 1000, integer=True)
    if "loss" in k and k["loss"] not in ("ce", "mse"):
        problems.append(f"loss must be 'ce' or 'mse', not {k['loss']!r}")
    if "input_centre" in k and k["input_centre"] not in gfa_math.INPUT_CENTRES:
        problems.append(f"input_centre must be one of {gfa_math.INPUT_CENTRES}, not {k['input_centre']!r}")
    if "layers" in k:
        layers = k["layers"]
        if not (layers in gfa_math.VARIANTS or (isinstance(layers, (list, tuple)) and layers
                                                and all(isinstance(n, str) for n in layers))):
            problems.append(f"layers must be 'first', 'deep' or a non-empty list of layer names, not {layers!r}")
    return problems


def training_method(name: str) -> LossFn:
    try:
        return TRAINING_METHODS[name]
    except KeyError:
        raise ValueError(f"Unknown training method {name!r}; choose one of {sorted(TRAINING_METHODS)}") from None
