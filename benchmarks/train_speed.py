"""Training speed: the default recipe against the usual MNIST example, in the same run.

    python -m benchmarks.train_speed            # full MNIST, about 5 minutes on 2 cores

Reference: the usual PyTorch MNIST example: torchvision dataset with ToTensor + Normalize
transforms, a DataLoader (batch 64, shuffled, no workers), Adam 1e-3, no schedule, the same
seed CNN as a plain nn.Sequential; at most 5 epochs. Ours: ``TrainConfig()`` (the default
recipe) through ``train_model``. Both are timed on training only: the clock is paused while
test accuracy is measured after each epoch. Prints images/second, epochs and time to 99.0%
test accuracy, and the ratios; writes JSON with --json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

from robust_core.data import load_dataset, resolve_data_dir
from robust_core.training import TrainConfig, evaluate, train_model

TARGET = 0.99
REFERENCE_MAX_EPOCHS = 5


def reference_run(root: Path, seed: int) -> dict:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = datasets.MNIST(str(root), train=True, download=False, transform=tf)
    test = datasets.MNIST(str(root), train=False, download=False, transform=tf)
    loader = DataLoader(train, batch_size=64, shuffle=True)
    test_loader = DataLoader(test, batch_size=1000)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    train_time, images, accs, reached = 0.0, 0, [], None
    for epoch in range(1, REFERENCE_MAX_EPOCHS + 1):
        model.train()
        t0 = time.perf_counter()
        for x, y in loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
            images += len(y)
        train_time += time.perf_counter() - t0
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += int((model(x).argmax(1) == y).sum())
        accs.append(correct / len(test))
        print(f"  reference epoch {epoch}: test {accs[-1]:.4f}, {train_time:.1f} s", flush=True)
        if accs[-1] >= TARGET:
            reached = (epoch, train_time)
            break
    return {"images_per_s": images / train_time, "test_acc_per_epoch": accs, "train_time_s": train_time,
            "epochs_to_target": reached[0] if reached else None, "time_to_target_s": reached[1] if reached else None}


def recipe_run(seed: int) -> dict:
    data = load_dataset("mnist")
    config = TrainConfig(seed=seed)
    accs, times, pause = [], [], [0.0]

    def on_progress(event):
        if event.kind == "epoch":
            t0 = time.perf_counter()
            accs.append(evaluate(event.model, data.test_x, data.test_y)["acc"])
            pause[0] += time.perf_counter() - t0
            times.append(event.elapsed_s - pause[0])
            print(f"  recipe epoch {event.epoch}: test {accs[-1]:.4f}, {times[-1]:.1f} s", flush=True)

    result = train_model(config, data=data, device="cpu", on_progress=on_progress)
    epochs_to = next((i + 1 for i, a in enumerate(accs) if a >= TARGET), None)
    n = len(data.train_x)
    return {"images_per_s": n * config.epochs / times[-1], "test_acc_per_epoch": accs, "train_time_s": times[-1],
            "final_test_acc": result.metrics["test_acc"], "epochs_to_target": epochs_to,
            "time_to_target_s": times[epochs_to - 1] if epochs_to else None, "config": config.to_dict()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    root = resolve_data_dir()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; data from {root}", flush=True)
    print(f"default recipe (in-memory tensors, {TrainConfig().to_dict()}):", flush=True)
    ours = recipe_run(args.seed)
    print("reference (DataLoader + transforms, batch 64, Adam 1e-3):", flush=True)
    ref = reference_run(root, args.seed)
    speed_ratio = ours["images_per_s"] / ref["images_per_s"]
    ref_time = ref["time_to_target_s"] if ref["time_to_target_s"] is not None else ref["train_time_s"]
    time_ratio = ref_time / ours["time_to_target_s"] if ours["time_to_target_s"] else float("nan")
    bound = ("" if ref["time_to_target_s"] is not None
             else f" (reference never reached {TARGET:.1%} in {REFERENCE_MAX_EPOCHS} epochs: a lower bound)")
    print()
    print(f"{'':28s}{'recipe':>12s}{'reference':>12s}{'ratio':>9s}")
    print(f"{'images / second':28s}{ours['images_per_s']:12.0f}{ref['images_per_s']:12.0f}{speed_ratio:8.2f}x")
    print(f"{'epochs to 99.0% test':28s}{str(ours['epochs_to_target']):>12s}{str(ref['epochs_to_target']):>12s}")
    print(f"{'time to 99.0% test (s)':28s}{ours['time_to_target_s'] or float('nan'):12.1f}{ref_time:12.1f}"
          f"{time_ratio:8.2f}x{bound}")
    print(f"{'test accuracy per epoch':28s}  recipe {ours['test_acc_per_epoch']}  "
          f"reference {ref['test_acc_per_epoch']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"recipe": ours, "reference": ref, "images_per_s_ratio": speed_ratio,
                                               "time_to_target_ratio": time_ratio, "torch": torch.__version__,
                                               "threads": torch.get_num_threads()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
