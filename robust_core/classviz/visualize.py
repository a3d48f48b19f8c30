"""The gradient-ascent loop: batched over targets (or seeds), one backward pass per step."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..device import channels_last_copy
from ..tensors import eval_mode
from .objectives import objective_loss, regulariser_loss
from .parametrisation import PARAMETRISATIONS, FFTImage, start_images
from .transforms import blur, gaussian_noise, jitter, random_rotate, random_scale


STEP_NORMS = {
    "l2": "normalised gradient, grad / ||grad||_2",
    "linf": "sign of the gradient (every pixel moves by the step size, as in PGD)",
    "none": "raw gradient (the step size multiplies the gradient itself)",
}

# Named settings for visualize(**RECIPES[name]) (the page's and the command line's choices).
RECIPES = {
    # Works on every shipped MNIST network, standard and adversarially trained: the noise-smoothed gradient
    # reaches dark pixels that a thresholding (eps = 0.3 adversarially trained) model ignores, and sign steps
    # move them. On the first 20 test 4s -> 9 (benchmarks.robust_morph, docs/benchmarks.md): the PGD-AT CNN reaches
    # p(9) >= 0.9 on all 20 and draws a 9 that the k-NN baseline reads as 9 in most; the "seed" recipe, 0 of 20.
    "smoothed": {"step_norm": "linf", "lr": 0.01, "noise_sigma": 0.3, "noise_samples": 16, "loss": "log_prob",
                 "steps": 200},
    # The plain normalised gradient: -log p, gradient normalised in L2, step 0.1. Fools a standard network in a few
    # dozen steps; stalls on an adversarially trained one (its dark pixels get no gradient).
    "seed": {"step_norm": "l2", "lr": 0.1, "noise_sigma": 0.0, "noise_samples": 1, "loss": "log_prob", "steps": 200},
    # 224 x 224 colour photos on ImageNet networks, Lucent's way: the FFT / decorrelated-colour
    # parametrisation, the logit objective (as Lucent: it never saturates, so the picture keeps forming after p reaches
    # 1), transformation robustness (jitter 8 px, scale +-5%, rotation +-5 degrees) and a little total variation.
    # Steps of L2 length 10 on the spectrum (of ~150,000 coefficients at 224 x 224: ~0.026 each on average): sign steps
    # (lr 0.05) also reach p = 1 but move every coefficient, even those the gradient barely touches, and leave grey,
    # high-frequency pictures; the L2 step follows the 1/f-preconditioned gradient and draws recognisable parts
    # (EfficientNet-Lite0: golden retriever faces and fur from noise, a cat photo turned golden retriever, p -> 1.0
    # in 64 steps). Pass threshold=None to run all 256 steps (the default 0.99 stops after a few steps, on a faint
    # picture) and, for a noise start, shape=(3, 224, 224). About 60 ms a step on one CPU core for EfficientNet-Lite0.
    "photo": {"parametrisation": "fft", "step_norm": "l2", "lr": 10.0, "loss": "logit", "steps": 256,
              "noise_sigma": 0.0, "noise_samples": 1, "jitter_pixels": 8, "scale_jitter": 0.05, "rotate_degrees": 5.0,
              "tv": 0.05},
}


def dark_gradient_share(model, image: torch.Tensor, target: int, *, dark: float = 0.1, loss: str = "log_prob") -> float:
    """Share of the objective's squared input gradient that falls on dark pixels (value < ``dark``) of ``image``.

    A diagnostic for thresholding: about 0.6 for the shipped standard MNIST CNN, about 1e-8 for the PGD-AT and
    TRADES ones (their first layer ignores pixels under ~0.3), so plain gradient ascent cannot draw a new
    stroke on them. ``image``: (C, H, W) or (1, C, H, W) in [0, 1]. Returns nan when no pixel is dark.
    """
    x = image.detach().reshape(1, *image.shape[-3:]).to(next(model.parameters()).device)
    with eval_mode(model), torch.enable_grad():
        x_var = x.clone().requires_grad_(True)
        per_image = objective_loss(model(x_var), torch.tensor([int(target)], device=x.device), loss)
        (grad,) = torch.autograd.grad(per_image.sum(), x_var)
    mask = x < dark
    if not mask.any():
        return float("nan")
    energy = grad.pow(2)
    return float(energy[mask].sum() / energy.sum().clamp_min(1e-30))


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
              step_norm: str | None = None, noise_sigma: float = 0.0, noise_samples: int = 1,
              l2: float = 0.0, tv: float = 0.0, jitter_pixels: int = 0, blur_every: int = 0,
              budget: tuple[str, float] | None = None, threshold: float | None = 0.99, grad_tol: float = 1e-12,
              seeds: Sequence[int] | None = None, seed: int = 0, record_every: int = 1,
              on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
              scale_jitter: float = 0.0, rotate_degrees: float = 0.0, parametrisation: str = "pixel",
              shape: tuple[int, int, int] | None = None) -> VisualizationResult:
    """Morph a start image toward ``target`` class(es) by gradient descent on a per-image loss.

    Each step: transforms (jitter, random scale, random rotation, then ``noise_samples`` Gaussian-noise copies
    when ``noise_sigma`` > 0, whose losses are averaged), forward, loss = objective + regularisers, one backward
    for the whole batch, then a step of the size ``lr`` along the gradient (per image) as ``step_norm`` says:
    "l2" (grad / ||grad||_2; the default), "linf" (sign of the gradient, as in PGD: every pixel
    moves by ``lr``) or "none" (the raw gradient; ``normalize_grad=False`` means the same), x <- x - step,
    then clipping to [0, 1] (and to the ``budget`` ball ("linf"|"l2", eps) around the start, which makes the
    result a targeted adversarial example). An image stops (is frozen) when its target probability, measured on
    the clean image, reaches ``threshold`` or its gradient norm falls under ``grad_tol``.

    :data:`RECIPES` names the settings the page offers; ``RECIPES["smoothed"]`` (noise sigma 0.3, 16
    samples, sign steps of 0.01) is the one that lets an adversarially trained MNIST model draw new
    strokes (see :func:`.transforms.gaussian_noise` and :func:`dark_gradient_share`). ``RECIPES["photo"]`` is
    for 224 x 224 colour photos and ImageNet networks (FFT parametrisation, transformation robustness).

    Images are (N, C, H, W) in [0, 1] of any C, H, W (the model takes them so and returns logits: it holds
    its own normalisation). ``parametrisation`` says what the steps act on: "pixel" (the pixels, clipped to
    [0, 1]: the behaviour above) or "fft" (:class:`.parametrisation.FFTImage`: a 1/f-scaled spectrum per
    decorrelated colour channel, image = sigmoid(decorrelate(irfft2(spectrum * scale))); ``lr`` is then in
    spectrum units: an L2 step of 10 at 224 x 224 as in the photo recipe, or 0.05 with sign steps). Whatever
    the parametrisation, the frames, ``final`` and what ``on_step`` gets are images in [0, 1], and the
    regularisers act on the image. With "fft", start="image" starts from a spectrum whose image is the start
    image (within 5e-4); the noise starts draw the spectrum itself (Lucent's N(0, 0.01^2) init, a mid-grey
    image with faint 1/f noise; "zeros": uniform grey 0.5); a blur is applied to the image and the spectrum
    re-fitted to it; a ``budget`` needs "pixel".

    Args:
        target: one class, or a list (one image per class: "all targets" is ``range(10)``).
        start: "image" (with ``image=``, e.g. a drawn digit), "uniform", "gaussian" or "zeros".
        seeds: several starts for one target (noise starts): one image per seed.
        shape: (C, H, W) of a noise start (default: the start image's, else the model's ``input_shape``
            attribute if it has one, else (1, 28, 28), MNIST's).
        lr: step size in pixel units per step when the gradient is normalised (0.1 = 10% of an L2 unit).
        jitter_pixels, scale_jitter, rotate_degrees: transformation robustness before each forward pass: a
            random roll of up to ``jitter_pixels`` pixels, a zoom by a factor uniform in [1 - scale_jitter,
            1 + scale_jitter], a rotation uniform in +-``rotate_degrees`` degrees (0: off; drawn from the
            generator seeded by ``seed``).
        on_step(step, x, probabilities): called after every step (e.g. to draw frames while it runs).
    The model is used in eval mode and restored; returned tensors are detached, on the model's device; a given
    ``seed`` gives the same result on every run (start noise and random transforms come from CPU generators).
    """
    if steps < 0 or lr <= 0:
        raise ValueError("steps must be >= 0 and lr > 0")
    step_norm = step_norm if step_norm is not None else ("l2" if normalize_grad else "none")
    if step_norm not in STEP_NORMS:
        raise ValueError(f"step_norm must be one of {sorted(STEP_NORMS)}, not {step_norm!r}")
    if noise_sigma < 0 or noise_samples < 1:
        raise ValueError("noise_sigma must be >= 0 and noise_samples >= 1")
    if not 0 <= scale_jitter < 1 or rotate_degrees < 0:
        raise ValueError("scale_jitter must be in [0, 1) and rotate_degrees >= 0")
    if parametrisation not in PARAMETRISATIONS:
        raise ValueError(f"parametrisation must be one of {sorted(PARAMETRISATIONS)}, not {parametrisation!r}")
    if parametrisation != "pixel" and budget is not None:
        raise ValueError("a budget around the start needs parametrisation='pixel'")
    device = next(model.parameters()).device
    targets = [target] if isinstance(target, int) else list(target)
    if seeds is not None:
        if len(targets) != 1:
            raise ValueError("give either several targets or several seeds, not both")
        targets = targets * len(seeds)
    t = torch.tensor(targets, dtype=torch.long, device=device)
    if image is not None:
        if shape is not None and tuple(shape) != tuple(image.shape[-3:]):
            raise ValueError(f"shape {tuple(shape)} differs from the start image's {tuple(image.shape[-3:])}")
        shape = tuple(image.shape[-3:])
    elif shape is None:
        shape = tuple(getattr(model, "input_shape", None) or (1, 28, 28))
    if len(shape) != 3:
        raise ValueError(f"shape must be (C, H, W), not {tuple(shape)}")
    fft = FFTImage(shape, device=device) if parametrisation == "fft" else None

    def starts(n: int, seed: int) -> torch.Tensor:
        """The variable the steps act on: the start images (pixel), or their spectrum (fft)."""
        if fft is None:
            return start_images(start, n, shape, image=image, seed=seed, device=device)
        if start == "image":
            return fft.spectrum(start_images(start, n, shape, image=image, seed=seed, device=device))
        return fft.random(start, n, seed=seed)

    def to_image(v: torch.Tensor) -> torch.Tensor:
        return v if fft is None else fft.image(v)

    # v: the optimised variable (the images themselves with "pixel"); x: the images.
    v = starts(len(t), seed) if seeds is None else torch.cat([starts(1, s) for s in seeds])
    with torch.no_grad():
        x = to_image(v)
    x0 = x.clone()
    ones = (1,) * (v.ndim - 1)  # broadcasts a per-image value over v
    generator = torch.Generator().manual_seed(seed)
    with eval_mode(model):
        net = channels_last_copy(model)  # a copy of the model in eval mode, or the model itself

        transformed = bool(jitter_pixels or scale_jitter or rotate_degrees or noise_sigma > 0)

        def probabilities_and_gradient(v: torch.Tensor, x: torch.Tensor, need_grad: bool):
            """p(x) for every class and, if needed, the gradient of the per-image loss in v (x = to_image(v)).

            Without transforms both come from one forward pass: one forward + one backward per step in all.
            """
            if not need_grad:
                with torch.no_grad():
                    return net(x).softmax(1), None
            v_var = v.detach().requires_grad_(True)
            with torch.enable_grad():
                x_var = to_image(v_var)
                shifted = jitter(x_var, jitter_pixels, generator)
                if scale_jitter:
                    shifted = random_scale(shifted, scale_jitter, generator)
                if rotate_degrees:
                    shifted = random_rotate(shifted, rotate_degrees, generator)
                if noise_sigma > 0:
                    logits = net(gaussian_noise(shifted, noise_sigma, noise_samples, generator))
                    objective = objective_loss(logits, t.repeat_interleave(noise_samples),
                                               loss).view(len(t), noise_samples).mean(1)
                else:
                    logits = net(shifted)
                    objective = objective_loss(logits, t, loss)
                per_image = objective + regulariser_loss(x_var, l2=l2, tv=tv)
                (grad,) = torch.autograd.grad(per_image.sum(), v_var)
            if transformed:
                with torch.no_grad():
                    return net(x).softmax(1), grad
            return logits.detach().softmax(1), grad

        active = torch.ones(len(t), dtype=torch.bool, device=device)
        steps_run = torch.zeros(len(t), dtype=torch.long)
        reasons = ["max steps"] * len(t)
        p, grad = probabilities_and_gradient(v, x, steps > 0)
        frames, probs, recorded = [x.detach().clone()], [p], [0]
        for step in range(1, steps + 1):
            if not active.any():
                break
            norms = grad.flatten(1).norm(dim=1)
            flat = active & (norms < grad_tol)
            for i in flat.nonzero().flatten().tolist():
                reasons[i] = "flat gradient"
            active &= ~flat
            if step_norm == "l2":
                grad = grad / (norms.view(-1, *ones) + 1e-10)
            elif step_norm == "linf":
                # Every pixel moves by lr, whatever the size of its gradient: on a thresholding model the
                # gradient on dark pixels is ~1e-6 of that on strokes, and an L2 step would never move them.
                grad = grad.sign()
            update = torch.where(active.view(-1, *ones), lr * grad, torch.zeros_like(grad))
            if fft is None:
                x = v = _project(x.detach() - update, x0, budget)
                if blur_every and step % blur_every == 0:
                    x = v = torch.where(active.view(-1, 1, 1, 1), _project(blur(x), x0, budget), x)
            else:
                with torch.no_grad():
                    v = v.detach() - update
                    if blur_every and step % blur_every == 0:
                        v = torch.where(active.view(-1, *ones), fft.spectrum(blur(to_image(v))), v)
                    x = to_image(v)
            steps_run += active.cpu().long()
            # The next step's gradient comes with this step's probabilities; none is needed after the last.
            p, grad = probabilities_and_gradient(v, x, step < steps)
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
    return VisualizationResult(t, torch.stack(frames), torch.stack(probs).detach(), recorded, x.detach(), steps_run,
                               reasons, adversarial=budget is not None)
