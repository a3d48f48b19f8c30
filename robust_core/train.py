"""Command line: train a configuration into the model store.

    python -m robust_core.train --dataset mnist --arch cnn --epochs 2
    python -m robust_core.train --arch mlp --arch-kwargs '{"hidden": [256], "activation": "elu"}'

A configuration already in the store is loaded, not trained again.
"""
from __future__ import annotations

import argparse
import shlex
import sys

from .data import DataNotFoundError
from .training import TrainingCancelled
from .training.flags import add_training_arguments, config_from_arguments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m robust_core.train", description=__doc__.split("\n\n")[0])
    add_training_arguments(p)
    p.add_argument("--name", default=None, help="display name in the store")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: $ROBUST_DEVICE or auto)")
    p.add_argument("--store", default=None, help="store folder (default: $ROBUST_STORE_DIR or the user cache)")
    p.add_argument("--export", default=None, metavar="FILE.safetensors",
                   help="also write the model as one file (weights + metadata) and its metadata as FILE.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    from .store import ModelStore

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    # The exact command goes into the metadata, so anyone can retrain a shipped model from it.
    command = "python -m robust_core.train " + shlex.join(a for a in argv)
    try:
        config = config_from_arguments(args)
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
