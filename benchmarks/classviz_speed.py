"""Class visualisation speed: ten targets x 200 steps in one batch vs a plain one-image loop.

    python -m benchmarks.classviz_speed

Model: the shipped standard CNN. Ours: ``visualize(model, range(10), steps=200, threshold=None)``
(one forward + one backward per step for all ten images). The plain loop, written here:
one image and one target at a time, loss -log(p + 1e-10), normalised gradient, clipping, 200 steps,
ten times. Both in the same run; the ratio is what to compare.
"""
from __future__ import annotations

import tempfile
import time


import torch

from robust_core.classviz import visualize
from robust_core.shipped import install_shipped
from robust_core.store import ModelStore


def seed_loop(model, target: int, steps: int = 200, lr: float = 0.1) -> torch.Tensor:
    x = torch.zeros(1, 1, 28, 28)
    for _ in range(steps):
        x.requires_grad_(True)
        p = model(x).softmax(1)[0, target]
        loss = -torch.log(p + 1e-10)
        (grad,) = torch.autograd.grad(loss, x)
        x = (x.detach() - lr * grad / (grad.norm() + 1e-10)).clamp(0, 1)
    return x


def main() -> int:
    store = ModelStore(tempfile.mkdtemp())
    entry = next(e for s, e, _ in install_shipped(store)
                 if e is not None and s.meta["config"]["method"] == "standard"
                 and s.meta["config"]["dataset"] == "mnist")
    model = store.load(entry.model_id)
    visualize(model, list(range(10)), steps=5, threshold=None)  # warm-up
    t0 = time.perf_counter()
    ours = visualize(model, list(range(10)), steps=200, threshold=None)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = torch.cat([seed_loop(model, t) for t in range(10)])
    t_seed = time.perf_counter() - t0
    with torch.no_grad():
        p_theirs = model(theirs).softmax(1).diag()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {entry.name}")
    print(f"ten targets x 200 steps: batched {t_ours:.2f} s, plain one-image loop {t_seed:.2f} s "
          f"-> {t_seed / t_ours:.1f}x")
    print(f"mean final target probability: batched {float(ours.final_probabilities.diag().mean()):.3f}, "
          f"loop {float(p_theirs.mean()):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
