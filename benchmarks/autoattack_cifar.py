"""AutoAttack standard on a CIFAR-10 network the lab trains, ours against the reference (pyautoattack), the same
images in the same run: the issue's GPU benchmark, which also runs (small) on a CPU.

    python -m benchmarks.autoattack_cifar --device cuda --epochs 5 --n 1000          # PreAct ResNet-18, on a GPU
    python -m benchmarks.autoattack_cifar --arch wrn_16_4 --arch-kwargs '{"depth": 10, "widen": 1}' --epochs 1 \\
        --n 32 --train-n 2000                                                         # a CPU's smoke run

Data: CIFAR-10 from ``$ROBUST_DATA_DIR`` when it is there; else generated 32×32 colour images in CIFAR-10's file
format (tests/generated_cifar.py: a colour and a stripe direction per class, with noise), and the output says so.
The network: ``--arch`` trained with ``--method`` (default fgsm_rs_at, Wong et al. 2020's fast adversarial training
at ε = 8/255: a robust network, so that every stage of AutoAttack has images left to attack). Then, on the first
``--n`` test images, in chunks of ``--chunk``: the reference's ``run_standard_evaluation`` and ours
(``run_autoattack``), each timed, the device synchronised around each call; per stage, robust accuracy of both and
the gap in points, the time ratio (reference / ours). Needs ``pip install -r benchmarks/requirements-reference.txt``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.autoattack_reference import STAGES, ours_chunk, reference_chunk
from robust_core.data import DataNotFoundError, load_dataset
from robust_core.training import TrainConfig, train_model


def cifar_data(train_n: int):
    """(splits, where they came from): the real CIFAR-10, else generated batches in its format."""
    try:
        return load_dataset("cifar10", download=False), "CIFAR-10"
    except DataNotFoundError:
        from tests.generated_cifar import write_generated_cifar10

        root = write_generated_cifar10(Path(tempfile.mkdtemp(prefix="aa-cifar-")), per_batch=train_n // 5,
                                       test=2000)
        return load_dataset("cifar10", root=root, download=False), "generated CIFAR-10-format data (no CIFAR-10 here)"


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--arch", default="preact_resnet18")
    parser.add_argument("--arch-kwargs", default="{}")
    parser.add_argument("--method", default="fgsm_rs_at")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-n", type=int, default=10_000, help="training images when the data is generated")
    parser.add_argument("--n", type=int, default=1000, help="test images attacked")
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "autoattack_cifar.json")
    args = parser.parse_args(argv)
    data, source = cifar_data(args.train_n)
    config = TrainConfig(dataset="cifar10", arch=args.arch, arch_kwargs=json.loads(args.arch_kwargs),
                         method=args.method, method_kwargs={"eps": args.eps} if args.method != "standard" else {},
                         optimizer="sgd_momentum", lr=0.2, weight_decay=5e-4, epochs=args.epochs, batch_size=256)
    t0 = time.perf_counter()
    model = train_model(config, data=data, device=args.device).model.eval()
    train_s = time.perf_counter() - t0
    x, y = data.test_x[: args.n].to(args.device), data.test_y[: args.n].to(args.device)
    rows = []
    for start in range(0, len(x), args.chunk):
        xc, yc = x[start:start + args.chunk], y[start:start + args.chunk]
        synchronise(args.device)
        ref = reference_chunk(model, xc, yc, args.eps, device=args.device)
        synchronise(args.device)
        ours = ours_chunk(model, xc, yc, args.eps)
        synchronise(args.device)
        rows.append({"ours": ours, "ref": ref})
    ours_s, ref_s = sum(r["ours"]["s"] for r in rows), sum(r["ref"]["s"] for r in rows)
    n = len(x)

    def robust_share(side: str, k: int) -> float:
        return sum(s == -1 or s > k for r in rows for s in r[side]["stage"]) / n

    print(f"{args.arch} ({sum(p.numel() for p in model.parameters()):,} parameters), {args.method}, {args.epochs} "
          f"epoch(s) on {source} in {train_s:.0f} s, device {args.device}; AutoAttack standard at L∞ ε = "
          f"{args.eps:.4g} on {n} test images")
    print("| after | ours | reference | gap |")
    print("|---|---|---|---|")
    table = []
    for k, name in enumerate(["clean"] + STAGES):
        a, b = robust_share("ours", k), robust_share("ref", k)
        table.append({"after": name, "ours": a, "reference": b})
        print(f"| {name} | {100 * a:.1f}% | {100 * b:.1f}% | {100 * (a - b):+.1f} pts |")
    print(f"time: ours {ours_s:.1f} s, reference {ref_s:.1f} s, reference / ours = {ref_s / ours_s:.2f}×")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"arch": args.arch, "source": source, "device": args.device, "n": n,
                                    "eps": args.eps, "train_s": train_s, "ours_s": ours_s, "reference_s": ref_s,
                                    "table": table}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
