"""Square attack (score-based, no gradients): the check against gradient masking."""
from __future__ import annotations

import math

import torch

from ._common import (attack_batch_size, check_inputs, eval_mode, logits_in_passes, make_generator, per_example,
                      resolve_target, rows_of)


def _p_schedule(p_init: float, iteration: int, n_queries: int) -> float:
    """Fraction of pixels changed per step, halved at fixed points of the budget (scaled from 10,000 queries)."""
    i = int(iteration / n_queries * 10000)
    for bound, factor in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256)):
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


def square(model, x, y, *, eps: float, n_queries: int = 1000, p_init: float = 0.8, targeted: bool = False,
           target=None, seed: int = 0) -> torch.Tensor:
    """Square Attack, L-inf (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020). Norm: L-inf.

    Random search that only reads the model's outputs: it starts from vertical stripes of
    +-eps, then repeatedly proposes a random square window (side shrinking on a fixed schedule)
    set to +-eps per channel and keeps it when the margin loss decreases. No gradient is used,
    so masked or obfuscated gradients do not stop it: if Square beats PGD, gradients are masked.

    Args:
        eps: L-inf budget in pixel units; a number, or a tensor of one per example.
        n_queries: model evaluations per example (the paper uses 10,000 for its evaluation).
        p_init: initial fraction of pixels in the window (0.8 in the paper for L-inf).

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
            p = _p_schedule(p_init, i, n_queries)
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
            new_margin = _margin(logits_in_passes(model, candidate, size), y[active], t[active] if t is not None else None)
            better = new_margin < margin[active]
            x_best[active[better]] = candidate[better]
            margin[active[better]] = new_margin[better]
    return x_best.detach()
