"""Command line: train a configuration into the model store.

    python -m robust_core.train --dataset mnist --arch cnn --epochs 2
    python -m robust_core.train --arch mlp --arch-kwargs '{"hidden": [256], "activation": "elu"}'

A configuration already in the store is loaded, not trained again.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys

from .data import DATASETS, DataNotFoundError
from .models import ARCHITECTURES
from .training import OPTIMIZERS, SCHEDULES, TRAINING_METHODS, TrainConfig, TrainingCancelled


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m robust_core.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default=d.dataset, choices=sorted(DATASETS))
    p.add_argument("--arch", default=d.arch, choices=sorted(ARCHITECTURES))
    p.add_argument("--arch-kwargs", default="{}", help="JSON object of architecture arguments")
    p.add_argument("--method", default=d.method, choices=sorted(TRAINING_METHODS))
    p.add_argument("--method-kwargs", default="{}", help="JSON object of training-method arguments")
    p.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--schedule", default=d.schedule, choices=SCHEDULES)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--train-subset", type=int, default=None, help="train on the first N training images only")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--name", default=None, help="display name in the store")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: $ROBUST_DEVICE or auto)")
    p.add_argument("--store", default=None, help="store folder (default: $ROBUST_STORE_DIR or the user cache)")
    p.add_argument("--export", default=None, metavar="FILE.safetensors",
                   help="also write the model as one file (weights + metadata) and its metadata as FILE.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def parse_json_object(text: str, flag: str) -> dict:
    """A command-line flag's JSON object, or ValueError saying which flag is wrong and why."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{flag} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, e.g. '{{\"hidden\": [256]}}'")
    return value


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        dataset=args.dataset, arch=args.arch, arch_kwargs=parse_json_object(args.arch_kwargs, "--arch-kwargs"),
        method=args.method, method_kwargs=parse_json_object(args.method_kwargs, "--method-kwargs"),
        optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        schedule=args.schedule, epochs=args.epochs, batch_size=args.batch_size, dropout=args.dropout,
        label_smoothing=args.label_smoothing, train_subset=args.train_subset, seed=args.seed,
    )


def main(argv: list[str] | None = None) -> int:
    from .store import ModelStore

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    # The exact command goes into the metadata, so anyone can retrain a shipped model from it.
    command = "python -m robust_core.train " + shlex.join(a for a in argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = ModelStore(args.store)
    bar = None

    def on_progress(event):
        nonlocal bar
        if args.quiet:
            return
        from tqdm import tqdm

        if bar is None:
            bar = tqdm(total=event.epochs * event.batches_per_epoch, unit="batch", file=sys.stderr)
        bar.n = (event.epoch - 1) * event.batches_per_epoch + event.batch
        postfix = {"epoch": f"{event.epoch}/{event.epochs}", "loss": f"{event.train_loss:.4f}",
                   "acc": f"{event.train_acc:.4f}"}
        if event.val_acc is not None:
            postfix["val_acc"] = f"{event.val_acc:.4f}"
        bar.set_postfix(postfix, refresh=True)

    try:
        model, entry, cached = store.train_or_load(config, name=args.name, device=args.device, on_progress=on_progress,
                                                   extra_meta={"command": command})
    except (DataNotFoundError, ValueError, FloatingPointError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, TrainingCancelled):
        print("\nTraining interrupted: nothing was saved.", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    m = entry.meta["metrics"]
    status = "already in the store (not retrained)" if cached else f"trained in {entry.meta['wall_time_s']:.1f} s"
    print(f"{entry.name} [{entry.model_id}] {status}: test accuracy {100 * m['test_acc']:.2f}%")
    print(f"saved at {entry.path}")
    if args.export:
        print(f"exported to {store.export_file(entry.model_id, args.export)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
