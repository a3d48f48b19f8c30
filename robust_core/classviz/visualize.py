"""The gradient-ascent loop: batched over targets (or seeds), one backward pass per step."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..device import channels_last_copy
from .objectives import objective_loss, regulariser_loss
from .parametrisation import start_images
from .transforms import blur, jitter


@dataclass
class VisualizationResult:
    targets: torch.Tensor  # (N,)
    frames: torch.Tensor  # (T, N, C, H, W) recorded images, T = recorded steps + 1 (the start)
    probabilities: torch.Tensor  # (T, N, K) every class's probability at each recorded frame
    recorded_steps: list[int]  # the step of each frame (0 = start)
    final: torch.Tensor  # (N, C, H, W)
    steps_run: torch.Tensor  # (N,) steps each image took before it stopped
    stop_reason: list[str] = field(default_factory=list)  # per image: "threshold", "flat gradient", "max steps"
    adversarial: bool = False  # a budget was set: the results are targeted adversarial examples

    @property
    def final_probabilities(self) -> torch.Tensor:
        return self.probabilities[-1]


def _project(x: torch.Tensor, start: torch.Tensor, budget: tuple[str, float] | None) -> torch.Tensor:
    if budget is None:
        return x.clamp(0, 1)
    norm, eps = budget
    delta = x - start
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    elif norm == "l2":
        n = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * (eps / n).clamp(max=1.0).view(-1, *([1] * (x.ndim - 1)))
    else:
        raise ValueError(f"budget norm must be 'linf' or 'l2', not {norm!r}")
    return (start + delta).clamp(0, 1)  # clipping after the ball keeps both constraints (see attacks.project)


def visualize(model, target: int | Sequence[int], *, start: str = "zeros", image: torch.Tensor | None = None,
              steps: int = 200, lr: float = 0.1, loss: str = "log_prob", normalize_grad: bool = True,
              l2: float = 0.0, tv: float = 0.0, jitter_pixels: int = 0, blur_every: int = 0,
              budget: tuple[str, float] | None = None, threshold: float | None = 0.99, grad_tol: float = 1e-12,
              seeds: Sequence[int] | None = None, seed: int = 0, record_every: int = 1,
              on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None) -> VisualizationResult:
    """Morph a start image toward ``target`` class(es) by gradient descent on a per-image loss.

    Each step: transforms (jitter), forward, loss = objective + regularisers, one backward for the whole
    batch, gradient normalised per image by its L2 norm (seed §3.2) unless ``normalize_grad=False``,
    x <- x - lr * grad, then clipping to [0, 1] (and to the ``budget`` ball ("linf"|"l2", eps) around the
    start, which makes the result a targeted adversarial example). An image stops (is frozen) when its
    target probability reaches ``threshold`` or its gradient norm falls under ``grad_tol``.

    Args:
        target: one class, or a list (one image per class: "all targets" is ``range(10)``).
        start: "image" (with ``image=``, e.g. a drawn digit), "uniform", "gaussian" or "zeros".
        seeds: several starts for one target (noise starts): one image per seed.
        lr: step size in pixel units per step when the gradient is normalised (0.1 = 10% of an L2 unit).
        on_step(step, x, probabilities): called after every step (e.g. to draw frames while it runs).
    The model is used in eval mode and restored; returned tensors are detached, on the model's device.
    """
    if steps < 0 or lr <= 0:
        raise ValueError("steps must be >= 0 and lr > 0")
    device = next(model.parameters()).device
    targets = [target] if isinstance(target, int) else list(target)
    if seeds is not None:
        if len(targets) != 1:
            raise ValueError("give either several targets or several seeds, not both")
        targets = targets * len(seeds)
    t = torch.tensor(targets, dtype=torch.long, device=device)
    shape = tuple(image.shape[-3:]) if image is not None else (1, 28, 28)
    if seeds is None:
        x = start_images(start, len(t), shape, image=image, seed=seed, device=device)
    else:
        x = torch.cat([start_images(start, 1, shape, image=image, seed=s, device=device) for s in seeds])
    x0 = x.clone()
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    net = channels_last_copy(model)  # a copy of the model in eval mode, or the model itself

    def probabilities_and_gradient(x: torch.Tensor, need_grad: bool):
        """p(x) for every class and, if needed, the gradient of the per-image loss at x.

        Without jitter both come from one forward pass: one forward + one backward per step in all.
        """
        if not need_grad:
            with torch.no_grad():
                return net(x).softmax(1), None
        x_var = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = net(jitter(x_var, jitter_pixels, generator))
            per_image = objective_loss(logits, t, loss) + regulariser_loss(x_var, l2=l2, tv=tv)
            (grad,) = torch.autograd.grad(per_image.sum(), x_var)
        if jitter_pixels:
            with torch.no_grad():
                return net(x).softmax(1), grad
        return logits.detach().softmax(1), grad

    active = torch.ones(len(t), dtype=torch.bool, device=device)
    steps_run = torch.zeros(len(t), dtype=torch.long)
    reasons = ["max steps"] * len(t)
    try:
        p, grad = probabilities_and_gradient(x, steps > 0)
        frames, probs, recorded = [x.detach().clone()], [p], [0]
        for step in range(1, steps + 1):
            if not active.any():
                break
            norms = grad.flatten(1).norm(dim=1)
            flat = active & (norms < grad_tol)
            for i in flat.nonzero().flatten().tolist():
                reasons[i] = "flat gradient"
            active &= ~flat
            if normalize_grad:
                grad = grad / (norms.view(-1, 1, 1, 1) + 1e-10)
            update = torch.where(active.view(-1, 1, 1, 1), lr * grad, torch.zeros_like(grad))
            x = _project(x.detach() - update, x0, budget)
            if blur_every and step % blur_every == 0:
                x = torch.where(active.view(-1, 1, 1, 1), _project(blur(x), x0, budget), x)
            steps_run += active.cpu().long()
            # The next step's gradient comes with this step's probabilities; none is needed after the last.
            p, grad = probabilities_and_gradient(x, step < steps)
            if threshold is not None:
                reached = active & (p.gather(1, t[:, None]).squeeze(1) >= threshold)
                for i in reached.nonzero().flatten().tolist():
                    reasons[i] = "threshold"
                active &= ~reached
            if step % record_every == 0 or step == steps or not active.any():
                frames.append(x.detach().clone())
                probs.append(p)
                recorded.append(step)
            if on_step is not None:
                on_step(step, x.detach(), p)
    finally:
        model.train(was_training)
    return VisualizationResult(t, torch.stack(frames), torch.stack(probs).detach(), recorded, x.detach(), steps_run,
                               reasons, adversarial=budget is not None)
