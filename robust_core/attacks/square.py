"""Square attack (score-based, no gradients): the check against gradient masking."""
from __future__ import annotations

import math

import torch

from ..tensors import eval_mode
from ._common import (attack_batch_size, check_inputs, logits_in_passes, make_generator, per_example, resolve_target,
                      rows_of)


def _p_schedule(p_init: float, iteration: int, n_queries: int, rescale: bool = True) -> float:
    """Fraction of pixels changed per step, halved after iterations 10, 50, 200, 500, 1,000, 2,000, 4,000, 6,000 and
    8,000 of a 10,000-query budget; ``rescale``: those points scaled to ``n_queries`` (the paper's code), else kept
    as they are (AutoAttack's Square, whose 5,000 queries then end at p_init / 128, never reaching / 256)."""
    i = int(iteration / n_queries * 10000) if rescale else iteration
    for bound, factor in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128),
                          (8000, 256)):
        if i <= bound:
            return p_init / factor
    return p_init / 512


def _margin(logits, y, target):
    """Loss to minimise: z_y - max_{i != y} z_i untargeted (< 0 means fooled), max_{i != t} z_i - z_t targeted."""
    cls = target if target is not None else y
    one_hot = torch.nn.functional.one_hot(cls, logits.shape[1]).bool()
    z_cls = logits[one_hot]
    z_other = logits.masked_fill(one_hot, -float("inf")).amax(1)
    return z_cls - z_other if target is None else z_other - z_cls


def square(model, x, y, *, eps: float, n_queries: int = 1000, p_init: float = 0.8, rescale_schedule: bool = True,
           targeted: bool = False, target=None, seed: int = 0) -> torch.Tensor:
    """Square Attack, L-inf (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020). Norm: L-inf.

    Random search that only reads the model's outputs: it starts from vertical stripes of
    +-eps, then repeatedly proposes a random square window (side shrinking on a fixed schedule)
    set to +-eps per channel and keeps it when the margin loss decreases. No gradient is used,
    so masked or obfuscated gradients do not stop it: if Square beats PGD, gradients are masked.

    Args:
        eps: L-inf budget in pixel units; a number, or a tensor of one per example.
        n_queries: model evaluations per example (the paper uses 10,000 for its evaluation).
        p_init: initial fraction of pixels in the window (0.8 in the paper for L-inf).
        rescale_schedule: shrink the window at points of the budget scaled from 10,000 queries (the paper's code);
            False keeps the 10,000-query points as iteration counts, as AutoAttack runs Square (larger windows for
            longer: with 5,000 queries, half the budget at a side of 3 pixels on MNIST where the rescaled schedule
            is down to 2 and then 1).

    Example:
        >>> x_adv = square(model, x, y, eps=0.3, n_queries=5000)
    """
    check_inputs(x, y, eps, "linf")
    t = resolve_target(y, targeted, target)
    generator = make_generator(seed)
    x = x.detach()
    n, c, h, w = x.shape
    if not isinstance(eps, torch.Tensor) and eps == 0:
        return x.clone()
    # One eps per example (minimal_eps' bisection attacks every bracket in one call): (N, 1, 1, 1).
    eps = per_example(eps, x)

    def rand_sign(*shape):
        return (torch.randint(0, 2, shape, generator=generator).float() * 2 - 1).to(x.device)

    size = attack_batch_size(x)  # images per forward pass; the random draws are made for all images at once
    with eval_mode(model), torch.no_grad():
        x_best = (x + eps * rand_sign(n, c, 1, w)).clamp(0, 1)
        margin = _margin(logits_in_passes(model, x_best, size), y, t)
        for i in range(n_queries - 1):
            active = (margin >= 0).nonzero().flatten()
            if len(active) == 0:
                break
            xa, xb = x[active], x_best[active]
            p = _p_schedule(p_init, i, n_queries, rescale_schedule)
            side = max(min(int(round(math.sqrt(p * h * w))), h - 1), 1)
            rows = torch.randint(0, h - side + 1, (len(active), 1), generator=generator).to(x.device)
            cols = torch.randint(0, w - side + 1, (len(active), 1), generator=generator).to(x.device)
            grid_h, grid_w = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
            in_rows = (grid_h >= rows) & (grid_h < rows + side)  # (N, H)
            in_cols = (grid_w >= cols) & (grid_w < cols + side)  # (N, W)
            window = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # (N, 1, H, W)
            signs = rand_sign(len(active), c, 1, 1) * rows_of(eps, active)
            # The window is set to x +- eps (one sign per channel); elsewhere the current best is kept.
            candidate = torch.where(window, (xa + signs).clamp(0, 1), xb)
            new_margin = _margin(logits_in_passes(model, candidate, size), y[active],
                                 t[active] if t is not None else None)
            better = new_margin < margin[active]
            x_best[active[better]] = candidate[better]
            margin[active[better]] = new_margin[better]
    return x_best.detach()
