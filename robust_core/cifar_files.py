"""CIFAR-10's files as distributed (the "python version": ``cifar-10-batches-py/data_batch_1`` … ``data_batch_5`` and
``test_batch``), read without running code.

Each batch is a pickled dict of a uint8 array (N, 3072, channel-major rows) and a list of labels. torchvision
unpickles them whole, which is safe only because it first checks each file's MD5 against the official ones; a copy
that differs (re-packed, or the small generated batches of the tests) would then be refused, or, without that check,
any pickle could run code. Here an unpickler that knows only NumPy's array reconstruction and Python's plain
containers reads them: a file that names anything else is refused, unread.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
# The only globals a CIFAR batch's pickle refers to: NumPy's array reconstruction (its module moved in NumPy 2).
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class CifarFileError(ValueError):
    """A file is not a CIFAR-10 batch (or names code to run); the message says which and why."""


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise CifarFileError(f"it refers to {module}.{name}, which a CIFAR-10 batch never does")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 32, 32, 3) uint8, labels (N,) int64) of one batch file."""
    try:
        with open(path, "rb") as f:
            entry = _ArraysOnly(io.BytesIO(f.read()), encoding="latin1").load()
    except CifarFileError as exc:
        raise CifarFileError(f"{path.name} is not a CIFAR-10 batch: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise CifarFileError(f"{path.name} is not a CIFAR-10 batch (damaged or another format): {exc}") from None
    if not isinstance(entry, dict):
        raise CifarFileError(f"{path.name} is not a CIFAR-10 batch: it holds a {type(entry).__name__}, not a dict")
    entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
    data, labels = entry.get("data"), entry.get("labels", entry.get("fine_labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise CifarFileError(f"{path.name} is not a CIFAR-10 batch: its data is not a uint8 array of 3,072-byte rows")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(data),) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise CifarFileError(f"{path.name} is not a CIFAR-10 batch: its labels are not one class 0–9 per image")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar10(root: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train images, labels), (test images, labels)) from ``root / "cifar-10-batches-py"``; FileNotFoundError when
    a batch is missing, CifarFileError when one is not a batch."""
    folder = Path(root) / FOLDER
    missing = [name for name in (*TRAIN_BATCHES, TEST_BATCH) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}")
    train = [read_batch(folder / name) for name in TRAIN_BATCHES]
    test = read_batch(folder / TEST_BATCH)
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])), test


def write_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """A batch file in the distributed format (for tests and for a dataset made by hand): ``images`` (N, 32, 32, 3)
    uint8."""
    rows = np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1))
    with open(path, "wb") as f:
        pickle.dump({"batch_label": path.name, "labels": [int(v) for v in labels], "data": rows,
                     "filenames": [f"{i}.png" for i in range(len(rows))]}, f, protocol=2)
