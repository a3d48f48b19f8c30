"""The adversarial gallery of the Attack page's eps slider: a few test images attacked at every slider position.

One attack per image, not one per slider position: the slider has 41 positions, and attacking the
gallery's 8 images at each of them took minutes on a robust model (every image that survives runs
every step, 41 times). Instead each image gets its minimal adversarial example, the one the accuracy
curve is built from, and each frame shows its perturbation scaled to the frame's eps:

    frame(eps) = x + min(1, eps / eps_k) * (x_adv_k - x),   x_adv_k adversarial at eps_k (minimal eps)

A convex combination of two images in [0, 1], so a valid image, and exactly ``eps`` away from x in the
attack's norm until eps_k: the perturbation grows with the slider, and the digit is misread from its
minimal eps on (where the curve counts it as broken), showing the same adversarial example beyond it.
An image the attack cannot break up to eps_max shows the attack's best attempt at eps_max, scaled
the same way. FGSM is exact and cheap: its direction does not depend on eps, one gradient gives
every frame. Predictions and confidences are computed on the frames themselves, never assumed.

    from robust_core.gallery import gallery_frames
    g = gallery_frames(model, x[:8], y[:8], attack="pgd", eps_frames=np.linspace(0, 0.4, 41), steps=40)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .attacks import flat_norm, get_attack
from .tensors import ce_loss, eval_mode, input_gradient, predict


def gallery_frames(model, x: torch.Tensor, y: torch.Tensor, *, attack: str, eps_frames: Sequence[float], seed: int = 0,
                   min_eps: torch.Tensor | None = None, on_progress: Callable[[float], None] | None = None,
                   **attack_kwargs) -> dict[str, torch.Tensor]:
    """Adversarial versions of images ``x`` (K, C, H, W) at every eps of ``eps_frames`` (F values, increasing).

    ``min_eps``: each image's minimal eps if already known (the Attack page's cached values from the
    curves, computed with ``eps_max = eps_frames[-1]`` and the same parameters); searched with
    :func:`robust_core.evaluation.minimal_eps` otherwise. ``attack_kwargs``: the attack's parameters
    (``eps_max`` is ignored: it is the last frame). ``on_progress(fraction)`` is called as the work
    advances and may raise to cancel (a dashboard's Stop button).

    Returns detached tensors: ``adversarial`` (F, K, C, H, W), ``predictions`` and ``confidences`` (F, K)
    (the model's top class and its probability on each frame), ``min_eps`` (K,): the eps from which
    the image shown is adversarial (0: misread without attack; inf: not broken up to the last frame).
    """
    from .evaluation import minimal_eps

    spec = get_attack(attack)
    eps_frames = [float(e) for e in eps_frames]
    if not eps_frames or any(b < a for a, b in zip(eps_frames, eps_frames[1:])) or eps_frames[0] < 0:
        raise ValueError("eps_frames must be a non-empty increasing list of eps values >= 0")
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"expected images (K, C, H, W) and K labels, got {tuple(x.shape)} and {tuple(y.shape)}")
    kwargs = {k: v for k, v in attack_kwargs.items() if k != "eps_max"}
    eps_max = eps_frames[-1]
    x, y = x.detach(), y.detach()
    reported = [0.0]

    def report(fraction):  # monotone: a retry adds a call to the plan, never moves the bar back
        if on_progress is not None and fraction > reported[0]:
            reported[0] = fraction
            on_progress(fraction)

    frames = torch.tensor(eps_frames, dtype=x.dtype, device=x.device)

    with eval_mode(model):
        clean_wrong = predict(model, x) != y
        if spec.single_step and spec.norm == "linf":  # one signed gradient: the same direction at every eps
            _, grad = input_gradient(ce_loss(model, y), x)
            adversarial = (x[None] + frames[:, None, None, None, None] * grad.sign()[None]).clamp(0, 1)
            adversarial[:, clean_wrong] = x[clean_wrong]
            report(0.9)
        else:
            delta, radius = _minimal_examples(model, spec, x, y, clean_wrong, eps_max, eps_frames, seed, kwargs,
                                              min_eps, report, minimal_eps)
            scale = torch.where(radius > 0, (frames[:, None] / radius.clamp_min(1e-12)[None]).clamp(max=1.0),
                                torch.zeros((), device=x.device))
            adversarial = x[None] + scale[:, :, None, None, None] * delta[None]
        with torch.no_grad():
            proba = torch.cat([torch.softmax(model(chunk), dim=1) for chunk in adversarial.flatten(0, 1).split(1000)])
    proba = proba.view(len(eps_frames), len(x), -1)
    predictions, confidences = proba.argmax(2), proba.amax(2)
    # The eps from which the image shown is misread at every later frame, whatever produced it.
    misread_on = (predictions != y[None]).int().flip(0).cumprod(0).flip(0).bool()  # (F, K): this frame and all later
    broken_from = torch.where(misread_on.any(0), frames[misread_on.int().argmax(0)],
                              torch.full((len(x),), float("inf"), device=x.device))
    report(1.0)
    return {"adversarial": adversarial.detach(), "predictions": predictions.detach(),
            "confidences": confidences.detach(), "min_eps": broken_from.detach()}


def _minimal_examples(model, spec, x, y, clean_wrong, eps_max, eps_frames, seed, kwargs, min_eps, report, minimal_eps):
    """Per image: (perturbation, the eps at which it is shown in full) for the frames."""
    n = len(x)
    delta = torch.zeros_like(x)
    radius = torch.zeros(n, device=x.device)
    found = torch.zeros(n, dtype=torch.bool, device=x.device)
    if spec.kind == "minimal":  # one run gives each image's smallest perturbation
        todo = (~clean_wrong).nonzero().flatten()
        if len(todo):
            full = spec(model, x[todo], y[todo], seed=seed, **kwargs)
            delta[todo] = full - x[todo]
            radius[todo] = flat_norm(full - x[todo], spec.norm)
        report(0.9)
        return delta, radius
    search_share = 0.0
    if min_eps is None:
        # The same search as the curves, on these images only; it dominates the cost, so most of the bar.
        search_share = 0.8
        min_eps = minimal_eps(model, x, y, attack=spec.name, eps_max=eps_max, seed=seed,
                              on_progress=lambda f: report(search_share * f), **kwargs)
    min_eps = torch.as_tensor(min_eps, dtype=torch.float32, device=x.device).clone()
    if len(min_eps) != n:
        raise ValueError(f"min_eps has {len(min_eps)} values for {n} images")
    min_eps[clean_wrong] = 0.0
    # Re-attack each image at its minimal eps (images sharing a value share a call). A random start
    # other than the search's can miss there: such an image tries the next frames up, then counts as unbroken.
    larger = sorted(e for e in eps_frames if e > 0)
    pending = {k: float(min_eps[k]) for k in range(n) if 0 < float(min_eps[k]) < float("inf")}
    tries = {k: 0 for k in pending}
    calls_done, calls_planned = 0, len(set(pending.values())) + 1
    while pending:
        value = min(pending.values())
        group = torch.tensor([k for k, v in pending.items() if v == value], device=x.device)
        x_adv = spec(model, x[group], y[group], eps=value, seed=seed, **kwargs)
        hit = predict(model, x_adv) != y[group]
        for k, adv, fooled in zip(group.tolist(), x_adv, hit.tolist()):
            del pending[k]
            if fooled:
                delta[k], radius[k], found[k] = adv - x[k], value, True
            elif tries[k] < 3 and any(e > value for e in larger):
                tries[k] += 1
                pending[k] = next(e for e in larger if e > value)
                calls_planned += 1
        calls_done += 1
        report(search_share + (0.9 - search_share) * calls_done / max(calls_planned, 1))
    unbroken = (~found & ~clean_wrong).nonzero().flatten()
    if len(unbroken) and eps_max > 0:  # the attack's best attempt at the largest eps
        x_adv = spec(model, x[unbroken], y[unbroken], eps=eps_max, seed=seed, **kwargs)
        delta[unbroken], radius[unbroken] = x_adv - x[unbroken], eps_max
    report(0.9)
    return delta, radius


__all__ = ["gallery_frames"]
