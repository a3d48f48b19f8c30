"""Pretrained models shipped with the app (``assets/models``), installed into the store on first start.

Each model is one exported ``.safetensors`` file (weights + metadata, see :meth:`ModelStore.export_bytes`)
with a readable ``.json`` copy of its metadata beside it, including the exact command that trained it
(``assets/models/train_shipped.sh`` trains them all). A lecture never waits for training.

    python -m robust_core.shipped            # list the shipped models and install the missing ones
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .file_locks import atomic_write_text
from .store import InvalidCheckpointError, ModelStore, StoredModel

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "assets" / "models"
# Ids installed once are remembered, so a shipped model the user deleted stays deleted.
INSTALLED_RECORD = ".shipped-installed.json"


@dataclass
class ShippedModel:
    file: Path
    meta: dict

    @property
    def model_id(self) -> str:
        return self.meta["id"]

    @property
    def name(self) -> str:
        return self.meta.get("name", self.file.stem)


def shipped_models(directory: str | os.PathLike | None = None) -> list[ShippedModel]:
    """The shipped models, read from their ``.json`` metadata (the weights are read only on install)."""
    directory = Path(directory) if directory is not None else SHIPPED_DIR
    found = []
    for weights in sorted(directory.glob("*.safetensors")):
        meta_file = weights.with_suffix(".json")
        if meta_file.is_file():
            found.append(ShippedModel(weights, json.loads(meta_file.read_text())))
    return found


def _installed_ids(store: ModelStore) -> set[str]:
    record = store.root / INSTALLED_RECORD
    try:
        return set(json.loads(record.read_text()))
    except (OSError, ValueError):
        return set()


def install_shipped(store: ModelStore, directory: str | os.PathLike | None = None, *,
                    force: bool = False) -> list[tuple[ShippedModel, StoredModel | None, str]]:
    """Import every shipped model the store lacks: [(shipped, entry or None, status)].

    status is "installed", "present", "skipped" (installed before, since deleted by the user; pass
    ``force=True`` to bring it back) or an error message for a damaged file. Never raises for one bad file:
    the other models still install, and nothing in the store is overwritten.
    """
    done = _installed_ids(store)
    report = []
    for shipped in shipped_models(directory):
        model_id = shipped.model_id
        if model_id in store:
            report.append((shipped, store.get(model_id), "present"))
            done.add(model_id)
            continue
        if model_id in done and not force:
            report.append((shipped, None, "skipped"))
            continue
        try:
            entry, _ = store.import_bytes(shipped.file.read_bytes())
        except (InvalidCheckpointError, OSError) as exc:
            report.append((shipped, None, f"error: {exc}"))
            continue
        done.add(model_id)
        report.append((shipped, entry, "installed"))
    if report:
        store.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(store.root / INSTALLED_RECORD, json.dumps(sorted(done)))
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m robust_core.shipped",
                                description="Install the shipped models into the store.")
    p.add_argument("--store", default=None, help="store folder (default: $ROBUST_STORE_DIR or the user cache)")
    p.add_argument("--force", action="store_true", help="reinstall shipped models you deleted")
    args = p.parse_args(argv)
    store = ModelStore(args.store)
    failed = False
    for shipped, _, status in install_shipped(store, force=args.force):
        acc = shipped.meta.get("metrics", {}).get("test_acc")
        acc_text = f"{100 * acc:.2f}%" if acc is not None else "?"
        print(f"{status:>9}  {shipped.model_id}  {shipped.name}  (test accuracy {acc_text})")
        failed |= status.startswith("error")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
