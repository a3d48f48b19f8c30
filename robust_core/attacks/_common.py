"""What every attack shares: input checks, projections, batching; the model helpers (eval mode, gradients w.r.t. the
input only) live in :mod:`robust_core.tensors`, the norms in :mod:`.norms`."""
from __future__ import annotations

import math

import torch

from .norms import eps_ceiling, flat_norm


def check_inputs(x: torch.Tensor, y: torch.Tensor, eps: float | None, norm: str) -> None:
    """Raise ValueError with a clear message for inputs an attack cannot meaningfully run on."""
    if not torch.is_floating_point(x) or x.ndim != 4:
        raise ValueError(f"images must be a float tensor (N, C, H, W), got {x.dtype} of shape {tuple(x.shape)}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"labels must be a 1-D tensor with one label per image, got shape {tuple(y.shape)} "
                         f"for {len(x)} images")
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or infinite values")
    if x.numel() and (x.min() < -1e-6 or x.max() > 1 + 1e-6):
        raise ValueError(f"images must lie in [0, 1], found values in [{float(x.min()):.3g}, {float(x.max()):.3g}]")
    if eps is None:
        return
    if isinstance(eps, torch.Tensor):  # one eps per example (minimal_eps' bisection attacks every bracket at once)
        if eps.shape != (len(x),) or not torch.isfinite(eps).all() or (eps < 0).any():
            raise ValueError(f"a per-example eps must be {len(x)} finite numbers >= 0, got shape {tuple(eps.shape)}")
        eps = float(eps.max()) if len(eps) else 0.0
    if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, not {eps!r}")
    limit = eps_ceiling(norm, x.shape[1:])
    if eps > limit:
        raise ValueError(f"eps = {eps} is larger than any {norm.upper()} distance between two images in "
                         f"[0, 1]^{tuple(x.shape[1:])} (at most {limit:.4g}); pixel values are in [0, 1], so an "
                         "L-inf eps of 0.3 means 0.3 x 255 = 76 grey levels")


def resolve_target(y: torch.Tensor, targeted: bool, target) -> torch.Tensor | None:
    """The target class per example for a targeted attack (an int or a tensor), else None."""
    if not targeted:
        if target is not None:
            raise ValueError("a target was given but targeted=False")
        return None
    if target is None:
        raise ValueError("a targeted attack needs target= (a class index or one per example)")
    t = torch.as_tensor(target, device=y.device, dtype=torch.long)
    if t.ndim == 0:
        t = t.expand(len(y)).clone()
    if t.shape != y.shape:
        raise ValueError(f"target must be one class or one per example ({len(y)}), got shape {tuple(t.shape)}")
    return t


def refuse_targeted(attack: str, why: str, targeted: bool, target) -> None:
    """An untargeted-only attack still takes ``targeted``/``target`` (the common contract), and refuses them here
    with a ValueError that says so, where an unknown keyword would have raised a bare TypeError."""
    if targeted or target is not None:
        raise ValueError(f"{attack} is untargeted only: {why}")


def expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def per_example(eps, x: torch.Tensor):
    """A tensor ``eps`` (one per example) as (N, 1, ..., 1), which broadcasts over x's examples; a number as it is."""
    if not isinstance(eps, torch.Tensor):
        return eps
    return expand(eps.to(dtype=x.dtype, device=x.device).expand(len(x)), x)


def rows_of(value, rows):
    """``value[rows]`` for a per-example tensor (eps, step size), ``value`` itself for a number."""
    return value[rows] if isinstance(value, torch.Tensor) else value


def project(x_adv: torch.Tensor, x: torch.Tensor, eps, norm: str) -> torch.Tensor:
    """Nearest point to x_adv in the eps-ball around x (L-inf or L2), intersected with [0, 1]. ``eps``: a number,
    or a (N, 1, ..., 1) tensor (one per example, see per_example)."""
    delta = x_adv - x
    if norm == "linf":
        delta = (delta.clamp(-eps, eps) if not isinstance(eps, torch.Tensor)
                 else torch.minimum(torch.maximum(delta, -eps), eps))
    elif norm == "l2":
        n = flat_norm(delta, "l2")
        e = eps.flatten() if isinstance(eps, torch.Tensor) else eps
        delta = delta * expand(torch.clamp(e / (n + 1e-12), max=1.0), delta)
    else:
        raise ValueError(f"projection onto the {norm} ball is not implemented")
    # Clipping to [0, 1] after the ball keeps the point inside both sets: for L-inf exactly, for L2
    # because clipping moves each coordinate toward x, so the L2 norm can only shrink.
    return (x + delta).clamp(0.0, 1.0)


def normalised_step(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit norm: sign for L-inf, grad / ||grad||_2 for L2."""
    if norm == "linf":
        return grad.sign()
    return grad / expand(flat_norm(grad, "l2") + 1e-12, grad)


def random_in_ball(x: torch.Tensor, eps, norm: str, generator: torch.Generator) -> torch.Tensor:
    """A uniform random start in the eps-ball (L-inf: per pixel; L2: uniform in the ball), clipped to [0, 1].
    ``eps``: a number or a (N, 1, ..., 1) tensor."""
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device="cpu").to(x.device)
        return (x + (2 * u - 1) * eps).clamp(0, 1)
    g = torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
    g = g / expand(flat_norm(g, "l2") + 1e-12, g)
    r = torch.rand(len(x), generator=generator, device="cpu").to(x.device) ** (1.0 / x[0].numel())
    e = eps.flatten() if isinstance(eps, torch.Tensor) else eps
    return (x + g * expand(r * e, g)).clamp(0, 1)


def attack_batch_size(x: torch.Tensor) -> int:
    """Images per forward-backward pass inside an attack: follows the device and the image size.

    Why: on a CPU, passes of a few dozen MNIST images run about twice as fast per image as passes of 500: a small
    pass's activations stay in cache (forward-backward of 512 images on the shipped PGD-AT CNN, 1 thread: 99 ms in
    passes of 64, 196 ms in one pass of 512; PGD-40 on 256 images in channels-last: 1.47 / 1.35 / 1.52 / 1.62 s in
    passes of 16 / 32 / 64 / 128). A GPU wants large passes to fill its cores; the budget in input values keeps the
    activations of large images (ImageNet: 150,528 values each) in memory.
    Results do not depend on it: every random start is drawn for the whole batch before it is split.
    """
    per_image = max(x[0].numel(), 1) if len(x) else 1
    budget, low, high = (32 * 784, 4, 256) if x.device.type == "cpu" else (1 << 24, 16, 4096)
    return int(min(max(2 ** int(math.log2(max(budget // per_image, 1))), low), high))


def chunks(n: int, size: int):
    """Index ranges of consecutive chunks of ``size`` covering ``range(n)``."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def logits_in_passes(model, x: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """``model(x)`` in passes of ``size`` images (default :func:`attack_batch_size`), under the current grad mode.

    Why: for attacks that query the model on every image still being attacked (Square: up to 5,000 queries on
    hundreds of images), one pass of 896 MNIST images takes 159 ms on 1 CPU thread and passes of 32 take 38 ms in
    all (the shipped PGD-AT CNN, channels-last). Each image's logits do not depend on the others in its pass."""
    size = size or attack_batch_size(x)
    if len(x) <= size:
        return model(x)
    return torch.cat([model(x[part]) for part in chunks(len(x), size)])


def make_generator(seed: int) -> torch.Generator:
    # A CPU generator whatever the device: the same seed gives the same attack on CPU and GPU.
    return torch.Generator().manual_seed(int(seed))


def success(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Per example: misclassified (untargeted) or classified as the target (targeted)."""
    pred = logits.argmax(1)
    return pred == target if target is not None else pred != y
