"""RobustBench's model zoo by name, through RobustBench's real load_model (the optional robustbench package, which
.ci/run installs): a failed download names the file and where to put it; a file put there is checked, stored and
evaluated like any network."""
from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from robust_core.external import ExternalModelError
from robust_core.external.robustbench import import_robustbench_utils, model_path, robustbench_model
from robust_core.store import ModelStore
from tests.generated_cifar import write_generated_cifar10

# Skipped only where the package is not installed at all (.ci/run installs it); installed but not importable fails.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("robustbench") is None,
                                reason="the optional robustbench package: pip install --no-deps -r "
                                       "requirements-robustbench.txt")


def test_without_internet_the_message_names_the_file_and_where_to_put_it(tmp_path):
    with pytest.raises(ExternalModelError) as caught:
        robustbench_model("Carmon2019Unlabeled", dataset="cifar10", threat_model="Linf", model_dir=str(tmp_path))
    message = str(caught.value)
    assert "could not download the weights of Carmon2019Unlabeled" in message
    assert str((tmp_path / "cifar10" / "Linf" / "Carmon2019Unlabeled.pt").resolve()) in message
    assert "models/cifar10/Linf/Carmon2019Unlabeled.pt" in message  # what RobustBench writes on the other machine


def test_an_unknown_name_or_threat_model_says_so(tmp_path):
    with pytest.raises(ExternalModelError, match="no cifar10 Linf model named 'carmon2019'"):
        robustbench_model("carmon2019", model_dir=str(tmp_path))
    with pytest.raises(ExternalModelError, match="threat models are"):
        robustbench_model("Carmon2019Unlabeled", threat_model="Linfinity", model_dir=str(tmp_path))


def test_without_the_package_the_message_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "robustbench.utils", None)  # as if not installed
    with pytest.raises(ExternalModelError, match="requirements-robustbench.txt"):
        import_robustbench_utils()


def test_weights_put_in_robustbench_s_folder_are_checked_stored_and_evaluated(tmp_path, monkeypatch, capsys):
    """RobustBench's WRN-28-4 (Ding2020MMA) with random weights in its own checkpoint layout (a DataParallel
    state dict under "state_dict"), in the file the download would have written."""
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    from robust_core.evaluate import main

    torch.manual_seed(0)
    network = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf]["Ding2020MMA"]["model"]()
    path = model_path("Ding2020MMA", dataset="cifar10", threat_model="Linf", model_dir=tmp_path / "rb")
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in network.state_dict().items()}}, path)
    monkeypatch.setenv("ROBUST_DATA_DIR", str(write_generated_cifar10(tmp_path / "data", per_batch=40, test=20)))
    assert main(["--robustbench", "Ding2020MMA", "--dataset", "cifar10", "--robustbench-dir", str(tmp_path / "rb"),
                 "--attack", "fgsm", "--eps", "0.0314", "--n", "8", "--direct",
                 "--store", str(tmp_path / "store")]) == 0
    printed = capsys.readouterr().out
    assert "Ding2020MMA (RobustBench): stored as" in printed and "5,849,050 parameters" in printed
    [entry] = ModelStore(tmp_path / "store").list("cifar10")
    assert entry.meta["external"]["origin"] == "RobustBench cifar10 Linf: Ding2020MMA"
    reloaded = ModelStore(tmp_path / "store").load(entry.model_id)  # rebuilt by RobustBench from its file
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(reloaded(x), network.eval()(x), atol=1e-5)
