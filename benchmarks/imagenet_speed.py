"""Speed on a real photo with EfficientNet-Lite0 on CPU, each task beside a plain reference loop, same run.

    python -m benchmarks.imagenet_speed            # prints a table, writes benchmarks/out/imagenet_speed.json

Three tasks, on Chelsea the cat (scikit-image's photo, shorter side 256 px), EfficientNet-Lite0 (offline weights):
- **targeted PGD-40 fooling** ("make the cat a stingray", L∞ ε = 2/255): ours is ``robust_core.attacks.pgd``
  (40 steps, targeted, projected); the plain loop is one-image gradient ascent on the target's score with
  normalised steps, the same 40 forward/backward passes;
- **256-step class visualisation** (tarantula, from noise): ours is ``visualize`` with ``RECIPES["photo"]`` (FFT
  parametrisation, jitter, scale, rotation, TV); the plain loop is pixel ascent on the score with L2 decay, jitter
  and a blur every 10 steps (cs231n's class visualisation), 256 steps;
- **every saliency method** the model supports (the page's photo settings): beside one plain vanilla-gradient map.
Targets (2 CPU cores): fooling < 5 s, 256 steps < 60 s, all saliency methods < 10 s. Times are the best of
``--repeats`` runs (a shared machine is noisy; the best run is the one least disturbed), ratios from the same run.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F


from robust_core.imagenet.models import load_imagenet_model
from robust_core.imagenet.photos import load_shipped_photo

TARGETS_S = {"targeted PGD-40": 5.0, "class visualization, 256 steps": 60.0, "all saliency methods": 10.0}
STINGRAY, TARANTULA = 6, 76


def best_of(repeats: int, fn):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def seed_fooling(model, x, target: int, steps: int, lr: float = 1.0):
    """The plain loop: gradient ascent on the target's score, step lr * g / ||g||, no projection."""
    x = x.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        score = model(x)[0, target]
        (grad,) = torch.autograd.grad(score, x)
        x = (x.detach() + lr * grad / grad.norm().clamp_min(1e-12)).clamp(0, 1)
    return x


def seed_visualization(model, target: int, steps: int, lr: float = 25.0, l2: float = 1e-3, jitter: int = 16):
    """The plain loop (cs231n's class visualisation): score - l2 ||x||², random jitter, a blur every 10 steps."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 224, 224, generator=generator)
    for step in range(steps):
        dx, dy = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
        shifted = torch.roll(x, shifts=(dx, dy), dims=(2, 3)).requires_grad_(True)
        objective = model(shifted)[0, target] - l2 * shifted.pow(2).sum()
        (grad,) = torch.autograd.grad(objective, shifted)
        x = torch.roll((shifted + lr * grad / grad.norm().clamp_min(1e-12)).detach(), shifts=(-dx, -dy),
                       dims=(2, 3)).clamp(0, 1)
        if step % 10 == 9:
            kernel = torch.tensor([1.0, 2.0, 1.0]) / 4
            x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"),
                         (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3), groups=3)
    return x


def seed_saliency(model, x, target: int):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[0, target], x)
    return grad.abs().amax(1)


def main(argv: list[str] | None = None) -> int:
    from robust_core.attacks import get_attack
    from robust_core.classviz import RECIPES, visualize
    from robust_core.saliency import METHODS, attribute, available_methods

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "imagenet_speed.json"))
    args = parser.parse_args(argv)

    model = load_imagenet_model("efficientnet_lite0", device="cpu")
    x = load_shipped_photo("chelsea")
    y = model(x).argmax(1)
    rows = []

    t_seed, _ = best_of(args.repeats, lambda: seed_fooling(model, x, STINGRAY, 40))
    t_ours, x_adv = best_of(args.repeats, lambda: get_attack("pgd")(model, x, y, eps=2 / 255, steps=40, targeted=True,
                                                                        target=torch.tensor([STINGRAY])))
    fooled = int(model(x_adv).argmax(1)) == STINGRAY
    rows.append({"task": "targeted PGD-40", "ours_s": t_ours, "seed_loop_s": t_seed,
                 "note": f"reads stingray: {fooled}, L∞ {float((x_adv - x).abs().max()) * 255:.2f}/255"})

    recipe = {**RECIPES["photo"], "steps": 256}
    t_seed, _ = best_of(1, lambda: seed_visualization(model, TARANTULA, 256))
    t_ours, result = best_of(1, lambda: visualize(model, TARANTULA, start="uniform", shape=(3, 224, 224),
                                                  threshold=None, **recipe))
    rows.append({"task": "class visualization, 256 steps", "ours_s": t_ours, "seed_loop_s": t_seed,
                 "note": f"p(tarantula) = {float(result.final_probabilities[0, TARANTULA]):.3f}"})

    methods = [m for m, why in available_methods(model).items() if not why]
    settings = dict(n_steps=20, nt_samples=10, window=48, stride=24)  # the photo page's settings
    t_seed, _ = best_of(args.repeats, lambda: seed_saliency(model, x, int(y)))
    t_ours, _ = best_of(args.repeats, lambda: [attribute(model, x, int(y), m, **settings) for m in methods])
    rows.append({"task": "all saliency methods", "ours_s": t_ours, "seed_loop_s": t_seed,
                 "note": f"{len(methods)} methods ({', '.join(METHODS[m].title.split(' (')[0] for m in methods)})"})

    print(f"EfficientNet-Lite0, {torch.get_num_threads()} threads, photo {tuple(x.shape)}")
    print("| task | ours | target | plain loop | ours / plain | note |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        r["target_s"] = TARGETS_S[r["task"]]
        r["met"] = r["ours_s"] < r["target_s"]
        print(f"| {r['task']} | {r['ours_s']:.2f} s | < {r['target_s']:.0f} s ({'met' if r['met'] else 'missed'}) | "
              f"{r['seed_loop_s']:.2f} s | {r['ours_s'] / r['seed_loop_s']:.2f} | {r['note']} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
