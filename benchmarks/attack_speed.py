"""Attack speed on the standard seed CNN and the first N MNIST test images (default 1,000).

    python benchmarks/attack_speed.py [--n 1000] [--model ID]

Prints images/second for FGSM, PGD-40, APGD-100, DeepFool and C&W (5 binary-search steps x 100),
the eps-slider response time (accuracy lookup on a 41-point grid + building the slider figure),
and PGD-40 robust accuracy at eps = 0.1 and 0.3 through ``robust_accuracy`` against a
straightforward per-batch PGD loop written here (batch 64, all 40 steps on every example),
measured in the same run. The model is the default recipe from the store (trained if absent).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from robust_core.attacks import ATTACKS  # noqa: E402
from robust_core.data import load_dataset  # noqa: E402
from robust_core.evaluation import accuracy_at, minimal_eps, robust_accuracy  # noqa: E402
from robust_core.plots import eps_slider_figure  # noqa: E402
from robust_core.store import ModelStore  # noqa: E402
from robust_core.training import TrainConfig  # noqa: E402


def plain_pgd_accuracy(model, x, y, eps, steps=40, batch_size=64, seed=0):
    """The straightforward loop: batches of 64, random start, every step on every example."""
    torch.manual_seed(seed)
    alpha = 2.5 * eps / steps
    correct = 0
    model.eval()
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        adv = (xb + torch.empty_like(xb).uniform_(-eps, eps)).clamp(0, 1)
        for _ in range(steps):
            adv.requires_grad_(True)
            loss = F.cross_entropy(model(adv), yb)
            (grad,) = torch.autograd.grad(loss, adv)
            adv = torch.min(torch.max(adv.detach() + alpha * grad.sign(), xb - eps), xb + eps).clamp(0, 1)
        with torch.no_grad():
            correct += int((model(adv).argmax(1) == yb).sum())
    return correct / len(x)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--model", default=None, help="store id (default: the default recipe, trained if absent)")
    args = parser.parse_args(argv)
    data = load_dataset("mnist")
    store = ModelStore()
    if args.model:
        model = store.load(args.model)
    else:
        model, entry, cached = store.train_or_load(TrainConfig())
        print(f"model: {entry.name} [{entry.model_id}] {'(from the store)' if cached else '(trained now)'}")
    x, y = data.test_x[: args.n], data.test_y[: args.n]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.n} test images")

    print("\nimages / second per attack (robust-accuracy batches of 500):")
    runs = {"fgsm": ("fgsm", {"eps": 0.3}), "pgd-40": ("pgd", {"eps": 0.3, "steps": 40}),
            "apgd-100": ("apgd_ce", {"eps": 0.3, "steps": 100}), "deepfool": ("deepfool", {}),
            "cw (5x100)": ("cw_l2", {"steps": 100, "binary_search_steps": 5})}
    for label, (name, kwargs) in runs.items():
        spec = ATTACKS[name]
        adv, seconds = timed(lambda: torch.cat([spec(model, x[i : i + 500], y[i : i + 500], **kwargs)
                                                for i in range(0, len(x), 500)]))
        acc = float((model(adv).argmax(1) == y).float().mean())
        print(f"  {label:12s} {len(x) / seconds:9.0f} img/s  ({seconds:6.1f} s, accuracy after attack {100 * acc:.1f}%)")

    print("\nPGD-40 robust accuracy, ours (stop on success, batches of 500) vs plain loop (batch 64, 40 steps each):")
    for eps in (0.1, 0.3):
        ours, t_ours = timed(lambda: robust_accuracy(model, x, y, attack="pgd", eps_grid=[eps], steps=40)[0])
        plain, t_plain = timed(lambda: plain_pgd_accuracy(model, x, y, eps))
        print(f"  eps={eps}: ours {100 * ours:.1f}% in {t_ours:.1f} s, plain {100 * plain:.1f}% in {t_plain:.1f} s "
              f"-> {t_plain / t_ours:.2f}x faster")

    print("\neps slider:")
    min_eps, t_min = timed(lambda: minimal_eps(model, x, y, attack="pgd", eps_max=0.4, steps=40))
    print(f"  per-image minimal eps (PGD-40, 13-point grid + 4 bisections): {t_min:.1f} s, once, then cached")
    grid = np.linspace(0, 0.4, 41).tolist()
    reps = 20
    _, t_lookup = timed(lambda: [accuracy_at(min_eps, grid) for _ in range(reps)])
    gallery = {"clean": x[:8, 0].numpy(), "adversarial": np.repeat(x[None, :8, 0].numpy(), 41, 0), "labels": y[:8].numpy(),
               "predictions": np.tile(y[:8].numpy(), (41, 1)), "confidences": np.ones((41, 8)), "model": "m"}
    curves = {"cnn": accuracy_at(min_eps, grid).tolist()}
    _, t_fig = timed(lambda: [eps_slider_figure(grid, curves, gallery=gallery).to_json() for _ in range(3)])
    print(f"  accuracy lookup over 41 eps: {1000 * t_lookup / reps:.2f} ms; slider figure with gallery built and "
          f"serialised: {1000 * t_fig / 3:.0f} ms (server side, once per change of model or attack; dragging is client-side)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
