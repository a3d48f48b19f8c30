"""CIFAR-10 as a full dataset of the lab, on generated data in its real file format: the loader (which never runs
code a file names), the field's residual networks in the registry, trained and attacked in the field's ε units."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from robust_core.attacks import get_attack
from robust_core.cifar_files import FOLDER, read_batch
from robust_core.data import DataNotFoundError, load_dataset
from robust_core.models import build_model, parameter_count
from robust_core.models.size import estimate_parameters
from robust_core.training import TrainConfig, train_model
from tests.generated_cifar import generated_images, write_generated_cifar10


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    return write_generated_cifar10(tmp_path_factory.mktemp("cifar"))


def test_the_loader_reads_the_distributed_batches_as_images_in_0_1(cifar_root):
    data = load_dataset("cifar10", root=cifar_root, download=False)
    assert data.train_x.shape[1:] == (3, 32, 32) and len(data.train_x) + len(data.val_x) == 2000
    assert len(data.test_x) == 500 and data.test_x.dtype == torch.float32
    images, labels = generated_images(500, 100)  # the test batch as written
    assert torch.equal(data.test_y, torch.from_numpy(labels))
    assert torch.equal(data.test_x[7], torch.from_numpy(images[7]).permute(2, 0, 1).float() / 255)


class _RunsCode:
    def __reduce__(self):
        return (exec, ("open('/tmp/robust-lab-cifar-pwned', 'w').write('x')",))


def test_a_batch_that_names_code_is_refused_unread(tmp_path):
    marker = __import__("pathlib").Path("/tmp/robust-lab-cifar-pwned")
    marker.unlink(missing_ok=True)
    folder = write_generated_cifar10(tmp_path, per_batch=20, test=20) / FOLDER
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({"data": _RunsCode(), "labels": [0]}, f)
    with pytest.raises(ValueError, match="refers to builtins.exec"):
        read_batch(folder / "data_batch_3")
    with pytest.raises(DataNotFoundError, match="cannot be used: data_batch_3 is not a CIFAR-10 batch"):
        load_dataset("cifar10", root=tmp_path, download=False)
    assert not marker.exists()
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged or another format"):
        read_batch(folder / "data_batch_3")
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, f)
    with pytest.raises(ValueError, match="3,072-byte rows"):
        read_batch(folder / "data_batch_3")


@pytest.mark.parametrize("arch, parameters", [("preact_resnet18", 11_172_170), ("wrn_16_4", 2_748_890),
                                              ("wrn_28_10", 36_479_194)])
def test_the_fields_networks_have_their_published_sizes_and_the_estimate_counts_them_unbuilt(arch, parameters):
    config = TrainConfig(dataset="cifar10", arch=arch)
    assert estimate_parameters(config) == parameters  # sized on the meta device: no memory
    if arch != "wrn_28_10":  # (36 M parameters built for nothing)
        assert parameter_count(build_model(arch, "cifar10")) == parameters


def test_a_huge_widening_factor_is_sized_without_being_built():
    config = TrainConfig(dataset="cifar10", arch="wrn_16_4", arch_kwargs={"widen": 400})
    assert estimate_parameters(config) > 4e9  # 16 GB of weights, refused by the queue's checks before any allocation


def test_a_small_wide_resnet_learns_generated_cifar_and_pgd_at_8_255_lowers_its_accuracy(cifar_root):
    data = load_dataset("cifar10", root=cifar_root, download=False)
    config = TrainConfig(dataset="cifar10", arch="wrn_16_4", arch_kwargs={"depth": 10, "widen": 1}, epochs=2,
                         batch_size=64, lr=5e-3, precision="fp32", seed=0)
    result = train_model(config, data=data)
    model = result.model
    x, y = data.test_x[:200], data.test_y[:200]
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    assert clean > 0.5, clean  # ten classes: chance is 10%
    adversarial = get_attack("pgd")(model, x, y, eps=8 / 255, seed=0)
    assert float((adversarial - x).abs().max()) <= 8 / 255 + 1e-6
    with torch.no_grad():
        robust = (model(adversarial).argmax(1) == y).float().mean().item()
    assert robust < clean - 0.05, (clean, robust)
    assert not model.training
