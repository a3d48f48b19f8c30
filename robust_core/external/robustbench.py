"""RobustBench's model zoo by name (Croce et al. 2021, https://robustbench.github.io), when the optional
``robustbench`` package is installed: ``python -m robust_core.evaluate --robustbench Carmon2019Unlabeled --dataset
cifar10 --threat-model Linf``.

RobustBench builds the network with its own code and fetches the weights into its own folder
(``<model_dir>/<dataset>/<threat model>/<name>.pt``, default ``./models``), through its real ``load_model``; in
PyTorch ≥ 2.6 that ``torch.load`` reads tensors only (``weights_only=True`` is its default). Without internet the
download fails, and the message names the file and where to put it.

Installing: ``pip install --no-deps -r requirements-robustbench.txt`` (the file says why ``--no-deps``: robustbench
1.1.1 pins timm==1.0.9, which would replace the lab's). robustbench 1.1.1 imports the AutoAttack package as
``autoattack``, the module name of its GitHub version; PyPI has it as ``pyautoattack`` (the same authors' code), which
is aliased here when ``autoattack`` itself is missing.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from torch import nn

from .loading import ExternalModelError

# RobustBench's names of the lab's datasets and of the threat models it ranks.
DATASETS = {"cifar10": "cifar10"}
THREAT_MODELS = ("Linf", "L2", "corruptions")
INSTALL = ("pip install --no-deps -r requirements-robustbench.txt (see docs/library.md, 'Networks the lab did not "
           "train')")


def import_robustbench_utils():
    """``robustbench.utils``, or ExternalModelError saying how to install it."""
    if importlib.util.find_spec("autoattack") is None and importlib.util.find_spec("pyautoattack") is not None:
        pyautoattack = importlib.import_module("pyautoattack")
        sys.modules.setdefault("autoattack", pyautoattack)
        sys.modules.setdefault("autoattack.state", importlib.import_module("pyautoattack.state"))
    try:
        return importlib.import_module("robustbench.utils")
    except ModuleNotFoundError as exc:
        missing = exc.name or "robustbench"
        raise ExternalModelError(f"RobustBench is not installed (no module {missing!r}): {INSTALL}") from None


def model_path(name: str, *, dataset: str, threat_model: str, model_dir: str | Path) -> Path:
    """Where RobustBench keeps (and looks for) the weights of ``name``."""
    return Path(model_dir) / DATASETS.get(dataset, dataset) / threat_model / f"{name}.pt"


def robustbench_model(name: str, *, dataset: str = "cifar10", threat_model: str = "Linf",
                      model_dir: str = "models") -> nn.Module:
    """RobustBench's network ``name`` with its weights (downloaded on first use), in eval mode: a model factory
    (``robust_core.external.robustbench:robustbench_model``) the store rebuilds the entry from."""
    if dataset not in DATASETS:
        raise ExternalModelError(f"the lab takes RobustBench's models of {sorted(DATASETS)}, not {dataset!r}")
    if threat_model not in THREAT_MODELS:
        raise ExternalModelError(f"RobustBench's threat models are {', '.join(THREAT_MODELS)}, not {threat_model!r}")
    utils = import_robustbench_utils()
    path = model_path(name, dataset=dataset, threat_model=threat_model, model_dir=model_dir)
    had_file = path.is_file()
    try:
        model = utils.load_model(model_name=name, model_dir=str(model_dir), dataset=DATASETS[dataset],
                                 threat_model=threat_model)
    except KeyError:
        raise ExternalModelError(f"RobustBench has no {dataset} {threat_model} model named {name!r} (names are "
                                 "case-sensitive, e.g. Carmon2019Unlabeled)") from None
    except Exception as exc:  # requests', gdown's and torch.load's errors for a failed download or a bad file
        if not had_file and not path.is_file():
            raise ExternalModelError(
                f"RobustBench could not download the weights of {name} ({type(exc).__name__}: {str(exc)[:200]}). "
                f"Without internet: on a machine that has it, run python -c \"from robustbench.utils import "
                f"load_model; load_model('{name}', dataset='{dataset}', threat_model='{threat_model}')\", then copy "
                f"the file it writes, models/{dataset}/{threat_model}/{name}.pt, to {path.resolve()}") from None
        raise ExternalModelError(f"RobustBench could not load {path}: {type(exc).__name__}: {str(exc)[:300]}. "
                                 "Delete the file to download it again.") from None
    return model.eval()
