"""Confidence: m(x) = max class probability, its distribution, calibration and selective prediction.

For networks m(x) is the max softmax; for the k-NN the share of the k votes (so it only takes the
values j/k); for logistic regression its max probability: :func:`scores` serves all three, with the
logits where the model has them (temperature scaling needs them).

Adversarial inputs (:func:`adversarial_inputs`) are crafted white-box on any model with an input
gradient (networks and the logistic regression); a k-NN has none, so it can only be scored on
images crafted on another model (a transfer attack).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .tensors import eval_mode

SEED_QUANTILES = (0.05, 0.10, 0.25, 0.50, 0.75)

# The attacks the confidence analysis offers, with their parameters. PGD runs every step on every
# image (no stop on success): stopping at the first misclassification leaves each attacked image
# just across the decision boundary, where m(x) is low by construction, which would say nothing
# about how sure a model is of an attacked image.
ATTACK_PARAMS: dict[str, dict] = {"fgsm": {}, "pgd": {"steps": 20, "stop_on_success": False}}


def confidence(proba: torch.Tensor) -> torch.Tensor:
    """m(x) = max_k p_k(x), per example."""
    return proba.max(1).values


def quantiles(values: torch.Tensor, qs: Sequence[float] = SEED_QUANTILES) -> dict[float, float]:
    """Quantiles of m(x) (linear interpolation, as NumPy's default)."""
    v = values.detach().double().cpu()
    return {q: float(torch.quantile(v, q)) for q in qs}


@dataclass
class ReliabilityBins:
    edges: list[float]  # n_bins + 1 edges in [0, 1]
    confidence: list[float | None]  # mean confidence per bin (None: empty bin)
    accuracy: list[float | None]
    count: list[int]

    @property
    def ece(self) -> float:
        """Expected calibration error: sum over bins of (share of examples) x |accuracy - confidence|."""
        n = sum(self.count)
        return sum(c / n * abs(a - m) for c, a, m in zip(self.count, self.accuracy, self.confidence) if c) if n else 0.0

    @property
    def mce(self) -> float:
        """Maximum calibration error over non-empty bins."""
        gaps = [abs(a - m) for c, a, m in zip(self.count, self.accuracy, self.confidence) if c]
        return max(gaps) if gaps else 0.0


def reliability(conf: torch.Tensor, correct: torch.Tensor, n_bins: int = 15) -> ReliabilityBins:
    """Equal-width bins of confidence on [0, 1]; the last bin includes 1.0."""
    conf, correct = conf.detach().double().cpu(), correct.detach().double().cpu()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    index = torch.clamp(torch.bucketize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    confs, accs, counts = [], [], []
    for b in range(n_bins):
        mask = index == b
        n = int(mask.sum())
        counts.append(n)
        confs.append(float(conf[mask].mean()) if n else None)
        accs.append(float(correct[mask].mean()) if n else None)
    return ReliabilityBins(edges.tolist(), confs, accs, counts)


def nll(proba: torch.Tensor, y: torch.Tensor) -> float:
    """Mean negative log-likelihood of the true class (probabilities floored at 1e-12)."""
    return float(-proba.clamp_min(1e-12).log().gather(1, y[:, None]).mean())


def brier(proba: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over examples of sum_k (p_k - 1[k = y])^2."""
    return float((proba - F.one_hot(y, proba.shape[1]).to(proba.dtype)).pow(2).sum(1).mean())


def calibration_metrics(proba: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> dict[str, float]:
    correct = (proba.argmax(1) == y).float()
    bins = reliability(confidence(proba), correct, n_bins)
    return {"accuracy": float(correct.mean()), "ece": bins.ece, "mce": bins.mce, "nll": nll(proba, y),
            "brier": brier(proba, y)}


def fit_temperature(logits: torch.Tensor, y: torch.Tensor, *, max_iter: int = 200) -> float:
    """Temperature T > 0 minimising the NLL of softmax(logits / T) on (validation) data (Guo et al. 2017).

    Optimised over log T with L-BFGS; if the optimum found is not better than T = 1, returns 1, so
    temperature scaling never raises the NLL of the data it was fitted on.
    """
    logits, y = logits.detach().double(), y.detach()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    optimiser.step(closure)
    t = float(log_t.detach().exp())
    if not (0 < t < float("inf")) or F.cross_entropy(logits / t, y) > F.cross_entropy(logits, y):
        return 1.0
    return t


def risk_coverage(conf: torch.Tensor, correct: torch.Tensor) -> tuple[list[float], list[float]]:
    """Selective prediction: keep the most confident share c of examples; returns (coverages, accuracies)."""
    order = conf.detach().cpu().argsort(descending=True)
    hits = correct.detach().cpu().double()[order].cumsum(0)
    kept = torch.arange(1, len(order) + 1, dtype=torch.float64)
    return (kept / len(order)).tolist(), (hits / kept).tolist()


def differentiable(model) -> nn.Module | None:
    """The torch module an input-gradient attack runs on: a network itself, the logistic
    regression's linear twin (same logits), or None for a model without gradient (k-NN)."""
    if isinstance(model, nn.Module):
        return model
    twin = getattr(model, "differentiable", None)
    return twin() if twin is not None else None


@torch.no_grad()
def scores(model, x: torch.Tensor, *, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(class probabilities, logits or None) of ``model`` on ``x``, in eval mode, on CPU.

    Logits for networks and the logistic regression (so temperature scaling applies); None for a
    k-NN, whose probabilities are vote shares with no logits behind them.
    """
    from .models import predict_proba

    net = differentiable(model)
    if net is None:
        return predict_proba(model, x).cpu(), None
    with eval_mode(net):
        device = next(net.parameters()).device
        logits = torch.cat([net(x[i : i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])
    return logits.softmax(1), logits


def adversarial_inputs(model, x: torch.Tensor, y: torch.Tensor, *, attack: str, eps: float, seed: int = 0,
                       batch_size: int = 500, on_progress=None) -> torch.Tensor:
    """``x`` attacked white-box on ``model`` (L-inf budget ``eps``) with ``attack`` from :data:`ATTACK_PARAMS`.

    ValueError for a model without input gradient (k-NN): score it on images crafted on another
    model instead (a transfer attack). ``eps = 0`` returns a copy of ``x``. ``on_progress(fraction)`` is called
    after each batch (a job's progress, which stops the attack there once nobody wants it).
    """
    from .attacks import get_attack

    if attack not in ATTACK_PARAMS:
        raise ValueError(f"attack must be one of {sorted(ATTACK_PARAMS)}, got {attack!r}")
    net = differentiable(model)
    if net is None:
        raise ValueError("this model has no input gradient (k-NN): attack another model and transfer its images")
    if eps == 0:
        return x.detach().clone()
    spec = get_attack(attack)
    device = next(net.parameters()).device
    batches = []
    for i in range(0, len(x), batch_size):
        batches.append(spec(net, x[i : i + batch_size].to(device), y[i : i + batch_size].to(device), eps=eps, seed=seed,
                            **ATTACK_PARAMS[attack]).cpu())
        if on_progress is not None:
            on_progress(min(i + batch_size, len(x)) / len(x))
    return torch.cat(batches) if batches else x.detach().clone()


__all__ = ["ATTACK_PARAMS", "SEED_QUANTILES", "ReliabilityBins", "adversarial_inputs", "brier", "calibration_metrics",
           "confidence", "differentiable", "fit_temperature", "nll", "quantiles", "reliability", "risk_coverage",
           "scores"]
