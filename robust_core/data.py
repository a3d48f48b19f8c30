"""Datasets as whole in-memory tensors.

Each split is one float tensor ``(N, C, H, W)`` in [0, 1] plus an int64 label tensor, loaded once
per process (airbench style): batching is then index slicing on the device, with no DataLoader,
no per-item transform and no worker processes, which is most of the speed on a 2-core CPU.

Where the files come from, in order:
1. ``root`` passed explicitly, else ``$ROBUST_DATA_DIR``, else ``~/.cache/robustness-lab/data``
   (``$XDG_CACHE_HOME`` respected), in torchvision's layout (``MNIST/raw/...``);
2. for Fashion-MNIST, the gzip files of Debian's ``dataset-fashion-mnist`` package;
3. torchvision's own download into that root (the normal way on an online machine).
When none works, :class:`DataNotFoundError` says what was tried and what to run.
"""
from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DATA_DIR_ENV = "ROBUST_DATA_DIR"
# Set to 1 to never download (offline machines, tests): a missing dataset then fails at once.
OFFLINE_ENV = "ROBUST_OFFLINE"
# Images held out of the training split for validation; fixed so every model sees the same split.
VALIDATION_SIZE = 5000
VALIDATION_SEED = 0
# Where Debian's dataset-fashion-mnist package installs its gzip files.
SYSTEM_FASHION_MNIST_DIRS = [Path("/usr/share/datasets/fashion-mnist")]


class DataNotFoundError(FileNotFoundError):
    """No copy of a dataset could be found or downloaded."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    torchvision_class: str
    shape: tuple[int, int, int]  # (C, H, W)
    class_names: tuple[str, ...]
    # Per-channel statistics of the training images, used by models' built-in normalisation.
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # Labels for a narrow cell (the Attack page's gallery puts one under each 32-pixel image): the class names when
    # they are short already.
    short_names: tuple[str, ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def short_class_names(self) -> tuple[str, ...]:
        return self.short_names or self.class_names


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist", "MNIST", "MNIST", (1, 28, 28), tuple(str(d) for d in range(10)), (0.1307,), (0.3081,)
    ),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", "Fashion-MNIST", "FashionMNIST", (1, 28, 28),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        (0.2860,), (0.3530,)
    ),
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10", "CIFAR10", (3, 32, 32),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        # The short names the CIFAR-10 literature's figures use.
        ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None


@dataclass
class DatasetSplits:
    """Train / validation / test tensors of one dataset, images float (N, C, H, W) in [0, 1]."""

    info: DatasetInfo
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str = field(default="")
    # Positions in the original training file of the validation images (the rest is train_x, in order).
    val_indices: torch.Tensor | None = None

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', not {name!r}")
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/robustness-lab`` (default ``~/.cache/robustness-lab``): data and models live below it."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "robustness-lab"


def default_data_dir() -> Path:
    return user_cache_dir() / "data"


def resolve_data_dir(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root`` if given, else ``$ROBUST_DATA_DIR``, else the user's cache folder."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else default_data_dir()


def load_dataset(name: str, root: str | os.PathLike | None = None, *, download: bool | None = None) -> DatasetSplits:
    """Load all splits of ``name`` into memory (cached per process).

    ``download`` defaults to True unless ``$ROBUST_OFFLINE`` is set to 1.
    """
    info = dataset_info(name)
    if download is None:
        download = os.environ.get(OFFLINE_ENV, "").lower() not in ("1", "true", "yes")
    return _load_cached(info.name, str(resolve_data_dir(root)), download)


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, root: str, download: bool) -> DatasetSplits:
    info = DATASETS[name]
    (train_x, train_y), (test_x, test_y), source = _read_raw(info, Path(root), download)
    # A fixed permutation, independent of the global RNG, so the validation split never moves.
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    order = torch.randperm(len(train_x), generator=generator)
    # (A small dataset made by hand, e.g. the tests' generated CIFAR-10 batches, keeps 90% for training.)
    held_out = min(VALIDATION_SIZE, len(train_x) // 10)
    val_idx, train_idx = order[:held_out].sort().values, order[held_out:].sort().values
    return DatasetSplits(
        info=info,
        train_x=train_x[train_idx],
        train_y=train_y[train_idx],
        val_x=train_x[val_idx],
        val_y=train_y[val_idx],
        test_x=test_x,
        test_y=test_y,
        source=source,
        val_indices=val_idx,
    )


def _to_tensors(images: np.ndarray | torch.Tensor, labels) -> tuple[torch.Tensor, torch.Tensor]:
    # torchvision gives tensors (MNIST) or arrays (CIFAR); IDX buffers are read-only, hence the copy.
    images = images.clone() if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))
    if images.ndim == 3:  # (N, H, W) grayscale
        images = images.unsqueeze(1)
    elif images.ndim == 4 and images.shape[-1] in (1, 3):  # (N, H, W, C) as CIFAR stores it
        images = images.permute(0, 3, 1, 2)
    x = images.contiguous().float().div_(255.0)
    y = (labels.long().clone() if isinstance(labels, torch.Tensor)
         else torch.as_tensor(np.array(labels), dtype=torch.int64))
    return x, y


def _expected_files(info: DatasetInfo, root: Path) -> str:
    """Where torchvision looks for the dataset's files under ``root``, in words (each format has its own)."""
    if info.torchvision_class == "CIFAR10":
        # torchvision's CIFAR10 reads the unpacked python batches of cifar-10-python.tar.gz.
        return ("the unpacked CIFAR-10 python version (cifar-10-python.tar.gz: data_batch_1 … data_batch_5, "
                f"test_batch, batches.meta) in {root / 'cifar-10-batches-py'}")
    return (f"the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
            f"t10k-labels-idx1-ubyte, gzip-compressed or not) in {root / info.torchvision_class / 'raw'}")


def _read_raw(info: DatasetInfo, root: Path, download: bool):
    import torchvision.datasets as tvd

    cls = getattr(tvd, info.torchvision_class)
    tried = [f"{root} (torchvision layout: {_expected_files(info, root)})"]
    if info.name == "cifar10":
        from .cifar_files import CifarFileError, read_cifar10

        try:
            (train_x, train_y), (test_x, test_y) = read_cifar10(root)
            return _to_tensors(train_x, train_y), _to_tensors(test_x, test_y), str(root)
        except FileNotFoundError:
            pass  # not there: download below
        except CifarFileError as exc:
            raise DataNotFoundError(f"{info.title} in {root} cannot be used: {exc}. Delete that folder and download "
                                    f"it again: python -m robust_core.data --dataset {info.name} --download") from None
    else:
        try:
            train, test = cls(str(root), train=True, download=False), cls(str(root), train=False, download=False)
            return _to_tensors(train.data, train.targets), _to_tensors(test.data, test.targets), str(root)
        except RuntimeError:
            pass  # torchvision says "Dataset not found"; try the other places.

    if info.name == "fashion_mnist":
        for folder in SYSTEM_FASHION_MNIST_DIRS:
            tried.append(f"{folder} (Debian package dataset-fashion-mnist)")
            if (folder / "train-images-idx3-ubyte.gz").exists():
                return (
                    _to_tensors(_read_idx(folder / "train-images-idx3-ubyte.gz"),
                                _read_idx(folder / "train-labels-idx1-ubyte.gz")),
                    _to_tensors(_read_idx(folder / "t10k-images-idx3-ubyte.gz"),
                                _read_idx(folder / "t10k-labels-idx1-ubyte.gz")),
                    str(folder),
                )

    download_error = None
    if download:
        tried.append(f"download with torchvision into {root}")
        try:
            root.mkdir(parents=True, exist_ok=True)
            train, test = cls(str(root), train=True, download=True), cls(str(root), train=False, download=True)
            return _to_tensors(train.data, train.targets), _to_tensors(test.data, test.targets), str(root)
        except Exception as exc:  # network errors come in many types (URLError, HTTPError, OSError, ...)
            download_error = exc

    message = (
        f"{info.title} was not found. Tried:\n  - " + "\n  - ".join(tried) + "\n"
        + (f"The download failed: {download_error}\n" if download_error else "")
        + "To fix it, either:\n"
        f"  - connect to the internet and run: python -m robust_core.data --dataset {info.name} --download\n"
        f"  - or put {_expected_files(info, root)} "
        f"(or point ${DATA_DIR_ENV} at a folder that holds them in that layout)."
    )
    if info.name == "fashion_mnist":
        message += "\n  - or, on Debian/Ubuntu: apt-get install dataset-fashion-mnist"
    raise DataNotFoundError(message)


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Check or download a dataset into the data folder.")
    parser.add_argument("--dataset", default="mnist", choices=sorted(DATASETS))
    parser.add_argument("--root", default=None, help=f"data folder (default: ${DATA_DIR_ENV} or {default_data_dir()})")
    parser.add_argument("--download", action="store_true", help="download with torchvision if not found")
    args = parser.parse_args(argv)
    # An explicit --download wins over $ROBUST_OFFLINE; without it, only local copies are used.
    try:
        splits = load_dataset(args.dataset, args.root, download=args.download)
    except DataNotFoundError as exc:
        print(exc)
        return 1
    print(
        f"{splits.info.title} from {splits.source}: train {len(splits.train_x)}, "
        f"validation {len(splits.val_x)}, test {len(splits.test_x)} images of shape {tuple(splits.train_x.shape[1:])}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
