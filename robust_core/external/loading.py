"""A network the lab did not train, from the researcher's own code: a factory (``package.module:function``, which
builds the ``nn.Module``) and a weights file that loads without running code.

Weights files:
- ``.safetensors``: tensors only, by design;
- ``.pt`` / ``.pth`` / ``.bin``: read with ``torch.load(weights_only=True)``, which unpickles tensors and plain
  containers only; a checkpoint that wraps its state dict (``{"state_dict": …}``, ``{"model": …}``) or was saved
  from ``nn.DataParallel`` (``module.`` prefixes) is unwrapped;
- ``.pt2`` (``torch.export``) is refused: ``torch.export.load`` unpickles parts of the archive with
  ``weights_only=False`` (PyTorch's own documentation: "Never load data from an untrusted source"), so loading one
  can run arbitrary code. Export the state dict instead.

The factory is the only code that runs, and it is the researcher's, named by them on their machine (the CLI and
Python): the dashboard never imports a factory named by an uploaded file (:mod:`robust_core.checkpoints`).
"""
from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

FACTORY_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
WEIGHTS_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
# Keys under which training scripts commonly nest the state dict (PyTorch Lightning, timm, RobustBench's own files).
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "state")


class ExternalModelError(ValueError):
    """An external model could not be built or loaded; the message says what to change."""


def import_factory(spec: str) -> Callable[..., nn.Module]:
    """The callable ``package.module:function`` (``function`` may be ``Class`` or ``Class.method``)."""
    if not isinstance(spec, str) or not FACTORY_PATTERN.match(spec):
        raise ExternalModelError(f"a model factory is written package.module:function, not {spec!r}")
    module_name, _, attribute = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ExternalModelError(f"cannot import {module_name!r} for the model factory {spec!r}: {exc}. Run from the "
                                 "folder that holds it, or add that folder to PYTHONPATH.") from exc
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ExternalModelError(f"{module_name!r} has no {attribute!r} (the model factory {spec!r})")
        target = getattr(target, part)
    if not callable(target):
        raise ExternalModelError(f"the model factory {spec!r} is a {type(target).__name__}, not a callable")
    return target


def build_from_factory(spec: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    factory = import_factory(spec)
    try:
        model = factory(**(kwargs or {}))
    except TypeError as exc:  # the wrong keyword arguments (a class that needs some, given none)
        raise ExternalModelError(f"the model factory {spec!r} could not be called with {kwargs or {}}: {exc}. Give "
                                 "its keyword arguments (--factory-kwargs, factory_kwargs=).") from None
    if not isinstance(model, nn.Module):
        raise ExternalModelError(f"the model factory {spec!r} returned a {type(model).__name__}, not a "
                                 "torch.nn.Module")
    return model


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, loaded without running code: :func:`robust_core.weights_files.read_weights_file`
    (headers checked first, ``weights_only=True``), which also unwraps the wrappers training scripts put around it;
    ``.pt2`` is refused (see the module's docstring)."""
    from ..weights_files import read_weights_file

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pt2":
        raise ExternalModelError(
            f"{path.name}: a torch.export program (.pt2) is refused: torch.export.load unpickles parts of the archive "
            "without weights_only, so loading one can run arbitrary code. Save model.state_dict() as .safetensors "
            "(or .pt) and give the code that builds the module with --model-factory.")
    if suffix not in WEIGHTS_SUFFIXES:
        raise ExternalModelError(f"{path.name}: weights are read from {', '.join(WEIGHTS_SUFFIXES)} files, not "
                                 f"{suffix or 'a file without an extension'}")
    if not path.is_file():
        raise ExternalModelError(f"no weights file at {path}")
    try:
        state = read_weights_file(path, wrappers=STATE_DICT_KEYS)
    except ValueError as exc:
        hint = (" It may hold pickled Python objects besides tensors, which are never loaded here: save "
                "model.state_dict() alone." if "Unpickling" in str(exc) else "")
        raise ExternalModelError(f"{exc}.{hint}") from None
    if not state:
        raise ExternalModelError(f"{path.name} holds no tensors: save model.state_dict() with torch.save or "
                                 "safetensors")
    return state


def load_into(model: nn.Module, state: dict[str, torch.Tensor], *, origin: str = "the weights") -> nn.Module:
    """``model`` with ``state`` loaded strictly (every tensor named and shaped as the module's), checked finite."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ExternalModelError(f"{origin} do not fit the module: {str(exc)[:600]}") from exc
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ExternalModelError(f"{origin}: tensor {name!r} holds NaN or infinite values")
    return model.eval()


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the state dict's names, dtypes, shapes and bytes in name order: the weights' content hash, the
    same for the same tensors whichever file format carried them."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()
