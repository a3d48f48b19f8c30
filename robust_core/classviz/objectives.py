"""What gradient ascent maximises (written as losses to minimise), and the regularisers."""
from __future__ import annotations

import torch

OBJECTIVES = {
    "prob": "naive: -p_target (stalls where the softmax saturates and its gradient vanishes)",
    "log_prob": "-log(p_target + 1e-10)",
    "logit": "-logit_target (no softmax: never saturates, but ignores the other classes)",
}


def objective_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-image loss (N,) whose descent raises the target class."""
    if kind == "prob":
        return -logits.softmax(1).gather(1, target[:, None]).squeeze(1)
    if kind == "log_prob":
        return -torch.log(logits.softmax(1).gather(1, target[:, None]).squeeze(1) + 1e-10)
    if kind == "logit":
        return -logits.gather(1, target[:, None]).squeeze(1)
    raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, not {kind!r}")


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, per image (N,)."""
    return ((x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
            + (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1))


def regulariser_loss(x: torch.Tensor, *, l2: float = 0.0, tv: float = 0.0) -> torch.Tensor:
    """Per-image penalty (N,): ``l2`` x mean squared pixel + ``tv`` x total variation."""
    out = torch.zeros(len(x), device=x.device, dtype=x.dtype)
    if l2:
        out = out + l2 * x.pow(2).flatten(1).mean(1)
    if tv:
        out = out + tv * total_variation(x)
    return out
