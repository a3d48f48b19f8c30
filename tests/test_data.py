import gzip
import shutil
import urllib.error

import pytest
import torch

from robust_core import data as data_mod
from robust_core.data import DataNotFoundError, load_dataset, resolve_data_dir

from .conftest import SHARED_DATA


def test_mnist_splits_are_in_memory_tensors_in_unit_range(mnist):
    assert mnist.train_x.shape == (55000, 1, 28, 28)
    assert mnist.val_x.shape == (5000, 1, 28, 28)
    assert mnist.test_x.shape == (10000, 1, 28, 28)
    assert mnist.train_x.dtype == torch.float32 and mnist.train_y.dtype == torch.int64
    assert float(mnist.train_x.min()) == 0.0 and float(mnist.train_x.max()) == 1.0
    assert set(mnist.test_y.unique().tolist()) == set(range(10))
    # every class is in the validation split, in roughly MNIST's proportions
    counts = torch.bincount(mnist.val_y, minlength=10)
    assert counts.min() > 350


def test_validation_split_is_fixed_and_disjoint_from_train(mnist):
    again = data_mod._load_cached.__wrapped__("mnist", str(resolve_data_dir()), False)
    assert torch.equal(again.val_x, mnist.val_x) and torch.equal(again.val_y, mnist.val_y)
    # the two splits partition the 60,000 training images
    val = set(mnist.val_indices.tolist())
    assert len(val) == 5000 and val <= set(range(60000))
    import torchvision.datasets as tvd

    original = tvd.MNIST(str(resolve_data_dir()), train=True, download=False).data
    train_positions = sorted(set(range(60000)) - val)
    assert torch.equal(mnist.train_x[:100, 0], original[train_positions[:100]].float() / 255)
    assert torch.equal(mnist.val_x[:100, 0], original[mnist.val_indices[:100]].float() / 255)


def test_fashion_mnist_loads_with_its_class_names():
    fashion = load_dataset("fashion_mnist", download=False)
    assert fashion.test_x.shape == (10000, 1, 28, 28)
    assert fashion.info.class_names[9] == "Ankle boot"


def test_root_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUST_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("ROBUST_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir() == tmp_path / "cache" / "robustness-lab" / "data"


def test_fashion_mnist_found_in_debian_package_folder(monkeypatch, tmp_path):
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    debian.mkdir()
    for raw in (SHARED_DATA / "FashionMNIST" / "raw").iterdir():
        with open(raw, "rb") as src, gzip.open(debian / f"{raw.name}.gz", "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst)
    monkeypatch.setattr(data_mod, "SYSTEM_FASHION_MNIST_DIRS", [debian])
    splits = data_mod._load_cached.__wrapped__("fashion_mnist", str(tmp_path / "empty"), False)
    assert splits.source == str(debian)
    reference = load_dataset("fashion_mnist", download=False)
    assert torch.equal(splits.test_x, reference.test_x)


def test_missing_data_gives_one_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("mnist", tmp_path / "nothing-here", download=False)
    message = str(info.value)
    assert "MNIST was not found" in message
    assert str(tmp_path / "nothing-here") in message
    assert "python -m robust_core.data --dataset mnist --download" in message
    assert "ROBUST_DATA_DIR" in message


def test_failed_download_is_reported_not_raised_raw(monkeypatch, tmp_path):
    import torchvision.datasets as tvd

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tvd.MNIST, "download", offline)
    with pytest.raises(DataNotFoundError, match="The download failed: .*no network"):
        load_dataset("mnist", tmp_path / "offline", download=True)


def test_truncated_idx_file_is_rejected(tmp_path):
    raw = (SHARED_DATA / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes()
    (tmp_path / "cut").write_bytes(raw[:500])
    with pytest.raises(ValueError, match="truncated"):
        data_mod._read_idx(tmp_path / "cut")


def test_unknown_dataset_is_a_value_error():
    with pytest.raises(ValueError, match="Unknown dataset 'svhn'"):
        load_dataset("svhn")


def test_data_command_line_reports_sizes(capsys):
    assert data_mod.main(["--dataset", "mnist"]) == 0
    assert "train 55000, validation 5000, test 10000" in capsys.readouterr().out


def test_missing_cifar10_names_its_own_files_not_mnist_s(tmp_path):
    """The CIFAR-10 error names CIFAR-10's own files, not "four IDX files" (MNIST's format)."""
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("cifar10", tmp_path, download=False)
    message = str(info.value)
    assert "IDX" not in message and "cifar-10-batches-py" in message and "data_batch_1" in message
    with pytest.raises(DataNotFoundError, match="four IDX files"):
        load_dataset("mnist", tmp_path, download=False)
