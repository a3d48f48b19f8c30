"""Confidence: m(x) = max class probability, its distribution, calibration and selective prediction
(seed 002 §1.3 and §2).

For networks m(x) is the max softmax; for the k-NN the share of the k votes (so it only takes the
values j/k); for logistic regression its max probability: :func:`robust_core.models.predict_proba`
serves all three.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SEED_QUANTILES = (0.05, 0.10, 0.25, 0.50, 0.75)


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
    return {"accuracy": float(correct.mean()), "ece": bins.ece, "mce": bins.mce, "nll": nll(proba, y), "brier": brier(proba, y)}


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


__all__ = ["SEED_QUANTILES", "ReliabilityBins", "brier", "calibration_metrics", "confidence", "fit_temperature", "nll",
           "quantiles", "reliability", "risk_coverage"]
