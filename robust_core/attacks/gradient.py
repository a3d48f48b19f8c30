"""Gradient attacks with a perturbation budget: FGSM, PGD, APGD (CE, DLR) and APGD-T."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tensors import ce_loss, eval_mode, input_gradient
from ._common import (attack_batch_size, check_inputs, chunks, expand, make_generator, normalised_step, per_example,
                      project, random_in_ball, refuse_targeted, resolve_target, rows_of, success)


def fgsm(model, x, y, *, eps: float, targeted: bool = False, target=None, seed: int = 0) -> torch.Tensor:
    """Fast Gradient Sign Method (Goodfellow, Shlens & Szegedy, ICLR 2015). Norm: L-inf.

    One step of size ``eps`` along the sign of the input gradient of the cross-entropy:
    x + eps * sign(grad CE(x, y)) untargeted, x - eps * sign(grad CE(x, target)) targeted.

    Args:
        eps: L-inf budget in pixel units ([0, 1] scale; 0.3 = 76 grey levels).
        targeted, target: move toward ``target`` (a class or one per example) instead of away from y.
        seed: unused (FGSM is deterministic); kept for the common contract.

    Example:
        >>> x_adv = fgsm(model, x, y, eps=0.1)
    """
    check_inputs(x, y, eps, "linf")
    t = resolve_target(y, targeted, target)
    with eval_mode(model):
        _, grad = input_gradient(ce_loss(model, y, t), x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def pgd(model, x, y, *, eps: float, norm: str = "linf", steps: int = 40, step_size: float | None = None,
        random_start: bool = True, restarts: int = 1, targeted: bool = False, target=None,
        stop_on_success: bool = True, batch_size: int | None = None, seed: int = 0) -> torch.Tensor:
    """Projected Gradient Descent (Madry et al., ICLR 2018). Norms: L-inf, L2.

    ``steps`` steps of size ``step_size`` (default 2.5 * eps / steps, Madry's choice) along the
    sign (L-inf) or the normalised gradient (L2) of the cross-entropy, each followed by a
    projection onto the eps-ball and [0, 1]; uniform random start in the ball; ``restarts`` runs,
    each only on the examples still classified correctly (best-so-far per example).

    Args:
        eps: budget in pixel units (L-inf) or L2 norm of the perturbation; a number, or a tensor of one per example.
        stop_on_success: stop iterating on an example as soon as it is misclassified (or hits the
            target). The returned point is adversarial, which is all robust accuracy needs; set False
            to run every step on every example (e.g. to maximise the loss).
        batch_size: images per forward-backward pass (default: :func:`attack_batch_size`, from the device and the
            image size). The result does not depend on it.
        seed: seeds the random starts.

    Example:
        >>> x_adv = pgd(model, x, y, eps=0.3, steps=40)              # L-inf
        >>> x_adv = pgd(model, x, y, eps=2.0, norm="l2", steps=100)
    """
    check_inputs(x, y, eps, norm)
    if norm not in ("linf", "l2"):
        raise ValueError(f"PGD supports norm 'linf' or 'l2', not {norm!r}")
    t = resolve_target(y, targeted, target)
    x = x.detach()
    best = x.clone()
    if not isinstance(eps, torch.Tensor) and eps == 0:
        return best
    eps = per_example(eps, x)  # a tensor of one per example becomes (N, 1, 1, 1)
    alpha = step_size if step_size is not None else 2.5 * eps / max(steps, 1)
    generator = make_generator(seed)
    with eval_mode(model), torch.no_grad():
        fooled = success(model(x), y, t)
    size = batch_size or attack_batch_size(x)
    with eval_mode(model):
        for _ in range(restarts):
            active = (~fooled).nonzero().flatten()
            if len(active) == 0:
                break
            # Drawn for every active example at once, then split: the same starts whatever the batch size.
            start = (random_in_ball(x[active], rows_of(eps, active), norm, generator) if random_start
                     else x[active].clone())
            for part in chunks(len(active), size):
                rows = active[part]
                adv, hit = _pgd_run(model, x[rows], y[rows], t[rows] if t is not None else None, start[part],
                                    eps=rows_of(eps, rows), norm=norm, steps=steps, alpha=rows_of(alpha, rows),
                                    stop_on_success=stop_on_success)
                # Unbroken examples keep the last iterate (within the ball): a gallery then shows what the
                # attack tried, and robust accuracy is the same either way.
                best[rows] = adv
                fooled[rows[hit]] = True
    return best.detach()


def _pgd_run(model, x, y, t, adv, *, eps, norm, steps, alpha, stop_on_success):
    """PGD steps on one pass-sized batch from the start points ``adv``: (last or first adversarial iterate, fooled)."""
    done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for _ in range(steps):
        idx = (~done).nonzero().flatten() if stop_on_success else torch.arange(len(x), device=x.device)
        if len(idx) == 0:
            break
        yi, ti = y[idx], t[idx] if t is not None else None
        point = adv[idx].requires_grad_(True)
        with torch.enable_grad():
            logits = model(point)
            loss = F.cross_entropy(logits, yi if ti is None else ti, reduction="none")
            (grad,) = torch.autograd.grad((loss if ti is None else -loss).sum(), point)
        if stop_on_success:
            # The gradient pass's logits already say which points are adversarial: those stop
            # where they are, and no extra forward pass is spent on checking.
            hit = success(logits.detach(), yi, ti)
            done[idx] |= hit
            idx, grad = idx[~hit], grad[~hit]
        adv[idx] = project(adv[idx] + rows_of(alpha, idx) * normalised_step(grad, norm), x[idx], rows_of(eps, idx),
                           norm)
    fooled = done.clone()
    rest = (~done).nonzero().flatten()  # moved by the last step: not checked yet
    if len(rest):
        with torch.no_grad():
            fooled[rest] = success(model(adv[rest]), y[rest], t[rest] if t is not None else None)
    return adv, fooled


def _dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020), per example, to maximise.

    Untargeted: -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3); targeted: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2).
    Invariant to shifting and rescaling the logits, so a model cannot hide behind their scale.
    """
    sorted_logits, _ = logits.sort(dim=1, descending=True)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        other = logits.clone()
        other.scatter_(1, y[:, None], -float("inf"))
        return -(z_y - other.amax(1)) / (sorted_logits[:, 0] - sorted_logits[:, 2] + 1e-12)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (sorted_logits[:, 0] - 0.5 * (sorted_logits[:, 2] + sorted_logits[:, 3]) + 1e-12)


def _checkpoints(steps: int) -> list[int]:
    """APGD's step-size checkpoints: the first after ``int(0.22 * steps)`` steps, each next window 3% of the budget
    shorter than the last but at least 6% (whole steps, at least 1): 22, 41, 57, 70, 80, 87, 93, 99 for 100 steps.

    The paper's p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) in whole steps, as the authors' code counts them;
    rounding each p_j * steps up instead gave 58 for 57 (0.57 * 100 is 57.000000000000007 in floats)."""
    window, shrink, shortest = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    points, at = [], window
    while at <= steps:
        points.append(at)
        window = max(window - shrink, shortest)
        at += window
    return points


def _halve_at_checkpoint(raised: torch.Tensor, span: int, rho: float, halved_last: torch.Tensor,
                         best_improved: torch.Tensor) -> torch.Tensor:
    """APGD's test at a checkpoint, per example: halve the step where at most ``rho`` of the ``span`` steps since the
    last checkpoint raised the loss (``raised``: how many did), or where the step was not halved at the last
    checkpoint (``halved_last``) and the best loss has not improved since (``best_improved``).

    Condition 2 needs the last checkpoint's decision: comparing the step size with its value after that
    checkpoint's halving, as ours did, is always true, so an example whose step had just been halved was halved
    again whenever its best loss stood still, however often its steps raised the loss."""
    return (raised <= rho * span) | (~halved_last & ~best_improved)


def _apgd_run(model, x, y, target, eps, norm, steps, loss_name, rho, start):
    """One APGD run on a pass-sized batch from the start points ``start``; returns (best adversarial or best-loss
    point, fooled mask).

    Only the examples not yet broken are stepped: a broken one keeps its first adversarial point,
    and every example's trajectory depends on that example alone (eval mode), so dropping the broken
    ones changes no result and saves their forward-backward passes. Success is read from the logits
    of the gradient pass at the same point, so a step costs one forward and one backward.
    """
    def loss_grad_logits(z, rows):
        """(per-example loss, input gradient, logits) at z, the points of examples ``rows``."""
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(z)
            if loss_name == "dlr":
                loss = _dlr_loss(logits, y[rows], target[rows] if target is not None else None)
            elif target is None:
                loss = F.cross_entropy(logits, y[rows], reduction="none")
            else:
                loss = -F.cross_entropy(logits, target[rows], reduction="none")
            (grad,) = torch.autograd.grad(loss.sum(), z)
        return loss.detach(), grad.detach(), logits.detach()

    def fooled_by(logits, rows):
        return success(logits, y[rows], target[rows] if target is not None else None)

    n = len(x)
    everyone = torch.arange(n, device=x.device)
    x_cur = start.clone()
    eta = (2.0 * eps).flatten().expand(n).clone() if isinstance(eps, torch.Tensor) else \
        torch.full((n,), 2.0 * eps, device=x.device)  # per-example step size, in pixel units
    loss, grad, logits = loss_grad_logits(x_cur, everyone)
    best_loss, x_best_loss, grad_at_best = loss.clone(), x_cur.clone(), grad.clone()
    fooled = fooled_by(logits, everyone)
    x_adv = x.clone()
    x_adv[fooled] = x_cur[fooled]
    checkpoints = _checkpoints(steps)
    last_check, successes = 0, torch.zeros(n, device=x.device)
    # The first checkpoint tests condition 1 only: no halving before it to compare with.
    best_loss_at_check, halved_last = best_loss.clone(), torch.ones(n, dtype=torch.bool, device=x.device)
    x_prev = x_cur.clone()
    alpha = 0.75  # momentum weight of the new step (the paper's alpha)
    for k in range(steps):
        live = (~fooled).nonzero().flatten()
        if len(live) == 0:
            break
        x0, xc, eps_live = x[live], x_cur[live], rows_of(eps, live)
        z = project(xc + expand(eta[live], x0) * normalised_step(grad[live], norm), x0, eps_live, norm)
        if k == 0:
            x_next = z
        else:
            x_next = project(xc + alpha * (z - xc) + (1 - alpha) * (xc - x_prev[live]), x0, eps_live, norm)
        new_loss, new_grad, logits = loss_grad_logits(x_next, live)
        hit = fooled_by(logits, live)
        x_adv[live[hit]] = x_next[hit]
        fooled[live[hit]] = True
        successes[live] += (new_loss > loss[live]).float()
        improved = new_loss > best_loss[live]
        best_loss[live] = torch.where(improved, new_loss, best_loss[live])
        x_best_loss[live[improved]] = x_next[improved]
        grad_at_best[live[improved]] = new_grad[improved]
        x_prev[live], x_cur[live], loss[live], grad[live] = xc, x_next, new_loss, new_grad
        if k + 1 in checkpoints:
            halve = _halve_at_checkpoint(successes, k + 1 - last_check, rho, halved_last,
                                         best_loss > best_loss_at_check)
            halved_last = halve
            eta = torch.where(halve, eta / 2, eta)
            restart = (halve & ~fooled).nonzero().flatten()
            if len(restart):
                # Restart from the best point so far, with its gradient; the momentum term of the next step is
                # x_best - (the iterate before the last step), as in Algorithm 1 of the paper (x^(k+1) := x_max,
                # x^(k) unchanged). Zeroing it made every restarted step a short plain step (0.75 eta) instead.
                x_cur[restart] = x_best_loss[restart]
                grad[restart] = grad_at_best[restart]
            successes.zero_()
            last_check, best_loss_at_check = k + 1, best_loss.clone()
    x_adv[~fooled] = x_best_loss[~fooled]
    return x_adv, fooled


def apgd(model, x, y, *, eps: float, norm: str = "linf", steps: int = 100, loss: str = "ce", restarts: int = 1,
         targeted: bool = False, target=None, rho: float = 0.75, batch_size: int | None = None,
         seed: int = 0) -> torch.Tensor:
    """Auto-PGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an
    ensemble of diverse parameter-free attacks"). Norms: L-inf, L2.

    PGD with momentum (0.75) and no step-size to tune: it starts at 2 * eps and halves, per
    example, at checkpoints (22%, 41%, 57%, ... of the budget) when fewer than ``rho`` of the
    steps since the last checkpoint raised the loss, or when neither step nor best loss moved;
    a halved example restarts from its best point. Keeps the first adversarial point found per
    example; restarts run only on examples not yet broken.

    Args:
        eps: budget (pixel units for L-inf); a number, or a tensor of one per example.
        loss: "ce" (cross-entropy) or "dlr" (difference of logits ratio, scale-invariant).
        targeted, target: targeted version with the targeted CE or DLR loss.
        batch_size: images per forward-backward pass (default: :func:`attack_batch_size`, from the device and the
            image size). The result does not depend on it.

    Example:
        >>> x_adv = apgd(model, x, y, eps=0.3, loss="dlr")
    """
    check_inputs(x, y, eps, norm)
    if norm not in ("linf", "l2"):
        raise ValueError(f"APGD supports norm 'linf' or 'l2', not {norm!r}")
    if loss not in ("ce", "dlr"):
        raise ValueError(f"APGD loss must be 'ce' or 'dlr', not {loss!r}")
    t = resolve_target(y, targeted, target)
    generator = make_generator(seed)
    x = x.detach()
    best = x.clone()
    if not isinstance(eps, torch.Tensor) and eps == 0:
        return best
    eps = per_example(eps, x)  # a tensor of one per example becomes (N, 1, 1, 1)
    with eval_mode(model):
        with torch.no_grad():
            logits = model(x)
            fooled = success(logits, y, t)
        # DLR's denominator reads the third logit (targeted: the third and fourth) in decreasing order.
        needed = 4 if t is not None else 3
        if loss == "dlr" and logits.shape[1] < needed:
            raise ValueError(f"the {'targeted ' if t is not None else ''}DLR loss needs at least {needed} classes, "
                             f"this model has {logits.shape[1]}; use loss='ce'")
        for _ in range(restarts):
            active = (~fooled).nonzero().flatten()
            if len(active) == 0:
                break
            # Drawn for every active example at once, then split: the same starts whatever the batch size.
            start = random_in_ball(x[active], rows_of(eps, active), norm, generator)
            for part in chunks(len(active), batch_size or attack_batch_size(x)):
                rows = active[part]
                adv, hit = _apgd_run(model, x[rows], y[rows], t[rows] if t is not None else None,
                                     rows_of(eps, rows), norm, steps, loss, rho, start[part])
                best[rows] = adv  # adversarial where hit, else the best-loss point: the strongest attempt, in the ball
                fooled[rows[hit]] = True
    return best.detach()


def apgd_t(model, x, y, *, eps: float, norm: str = "linf", steps: int = 100, n_target_classes: int = 9,
           restarts: int = 1, targeted: bool = False, target=None, batch_size: int | None = None,
           seed: int = 0) -> torch.Tensor:
    """APGD-T (Croce & Hein 2020): targeted APGD with the targeted DLR loss, run in turn toward
    each of the ``n_target_classes`` classes with the highest logits (after the true one), each
    run only on the examples still classified correctly. Untargeted in effect: it succeeds when
    the prediction changes. Norms: L-inf, L2.

    Args:
        targeted, target: refused (ValueError): APGD-T picks its own targets. To reach a class of one's choosing,
            ``apgd(..., loss="dlr", targeted=True, target=t)`` is one of its runs.

    Example:
        >>> x_adv = apgd_t(model, x, y, eps=0.3)
    """
    refuse_targeted("APGD-T", "it picks its own target classes (the highest other logits) and succeeds on any wrong "
                    "class; for a class of your choice run apgd with targeted=True", targeted, target)
    check_inputs(x, y, eps, norm)
    x = x.detach()
    best = x.clone()
    if eps == 0:
        return best
    with eval_mode(model), torch.no_grad():
        logits = model(x)
        fooled = logits.argmax(1) != y
        ranked = logits.sort(dim=1, descending=True).indices
    n_classes = logits.shape[1]
    for i in range(min(n_target_classes, n_classes - 1)):
        active = (~fooled).nonzero().flatten()
        if len(active) == 0:
            break
        # The (i+1)-th most likely class that is not the true label.
        order = ranked[active]
        not_true = order != y[active, None]
        target = order[not_true].view(len(active), n_classes - 1)[:, i]
        adv = apgd(model, x[active], y[active], eps=eps, norm=norm, steps=steps, loss="dlr", restarts=restarts,
                   targeted=True, target=target, batch_size=batch_size, seed=seed + i)
        with eval_mode(model), torch.no_grad():
            hit = model(adv).argmax(1) != y[active]
        best[active[hit]] = adv[hit]
        fooled[active[hit]] = True
    return best.detach()
