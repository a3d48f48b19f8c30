"""The store's entries for networks the lab did not train (:mod:`robust_core.external`): checked, then stored as
tensors beside the name of the code that builds them, so that every page, the sweep and AutoAttack load them as they
load a trained one, and their cached results are keyed by their weights' content hash (the entry's id)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import REGISTRY_FACTORY, state_dict_of
from ..external import (ExternalModelError, ModelCheckReport, build_from_factory, check_model, load_into,
                        read_weights, weights_digest)
from ..training import TrainConfig
from ..training.config import EXTERNAL
from .entries import FORMAT_VERSION, StoredModel, library_versions

# Test images the import checks classify (accuracy far from chance says the input range is right); few, so that a
# WRN-28-10 on a CPU checks in seconds.
CHECK_IMAGES = 64


def _factory_of(model: nn.Module) -> str:
    """``module:Class`` of ``model``: its factory when its class builds it with no argument."""
    cls = type(model)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise ExternalModelError(
            f"{cls.__qualname__} is defined in a script or a function, so no other process can rebuild it: give "
            "factory='package.module:function' (a function in an importable module that returns the network)")
    return f"{cls.__module__}:{cls.__qualname__}"


def _check_images(dataset: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    from ..data import DataNotFoundError, load_dataset

    try:
        data = load_dataset(dataset)
    except (DataNotFoundError, OSError):
        return None, None  # the checks then use random images in [0, 1], without the accuracy check
    return data.test_x[:CHECK_IMAGES], data.test_y[:CHECK_IMAGES]


class StoreExternal:
    """External networks for :class:`robust_core.store.ModelStore` (which this is a part of): its ``_write_new``,
    ``get`` and ``load`` are the store's."""

    def add_external(self, model: nn.Module, *, dataset: str, name: str | None = None, factory: str | None = None,
                     factory_kwargs: dict[str, Any] | None = None, origin: str | None = None,
                     images: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> StoredModel:
        """Check ``model`` (:func:`robust_core.external.check_model`: a problem raises ModelCheckError listing them
        all), then store it. ``factory``: ``package.module:function`` that builds the same network from
        ``factory_kwargs`` (default: the model's class, called with no argument); the stored entry is rebuilt from it
        and its weights, and must give the same outputs. The entry's metadata keeps the checks' findings
        (``meta["external"]["checks"]``) and ``origin`` (where the weights came from). The same network added twice
        is one entry."""
        if images is None:
            images, labels = _check_images(dataset)
        report = check_model(model, dataset=dataset, images=images, labels=labels)
        report.raise_for_problems()
        factory = factory or _factory_of(model)
        factory_kwargs = dict(factory_kwargs or {})
        state = state_dict_of(model)
        config = TrainConfig(dataset=dataset, arch=EXTERNAL, method=EXTERNAL,
                             arch_kwargs={"factory": factory, "kwargs": factory_kwargs,
                                          "weights_sha256": weights_digest(state)})
        rebuilt = load_into(build_from_factory(factory, factory_kwargs), state, origin=f"{factory}'s weights")
        _check_rebuilt(model, rebuilt, report, images if images is not None else None, dataset)
        model_id = config.config_hash()
        meta = {
            "format_version": FORMAT_VERSION,
            "id": model_id,
            "name": name or f"{type(model).__name__} · {origin or factory}",
            "config": config.to_dict(),
            "metrics": {"test_acc": report.clean_accuracy} if report.clean_accuracy is not None else {},
            "history": {},
            "parameters": sum(p.numel() for p in model.parameters()),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": library_versions(),
            "external": {"origin": origin or factory, "checks": report.to_dict()},
        }
        return self._write_new(model_id, dataset, state, meta, model=rebuilt)

    def add_external_files(self, *, factory: str, weights: str | Path, dataset: str,
                           factory_kwargs: dict[str, Any] | None = None, name: str | None = None) -> StoredModel:
        """:meth:`add_external` for the researcher's code and weights file: ``factory`` builds the network,
        ``weights`` (.safetensors, or .pt/.pth read with ``weights_only=True``) fills it."""
        model = load_into(build_from_factory(factory, factory_kwargs), read_weights(weights),
                          origin=Path(weights).name)
        return self.add_external(model, dataset=dataset, name=name, factory=factory, factory_kwargs=factory_kwargs,
                                 origin=Path(weights).name)


def _check_rebuilt(model: nn.Module, rebuilt: nn.Module, report: ModelCheckReport, images, dataset: str) -> None:
    """The network the entry rebuilds must be the one given: the same outputs on the check images, unless the model is
    randomised. The same code on the same weights and inputs computes the same sums, up to the order a GPU's kernels
    may pick: float32 rounding (~1e-7 relative per operation, a few thousand operations per logit) stays far below
    the 1e-4 of the largest logit allowed here, while a missing buffer or another layer moves logits by far more."""
    if report.randomised:
        return
    from ..data import dataset_info

    x = images if images is not None else torch.rand((8, *dataset_info(dataset).shape),
                                                     generator=torch.Generator().manual_seed(0))
    device = next(model.parameters()).device
    with torch.no_grad():
        given, again = model.eval()(x.to(device)).cpu(), rebuilt.to(device).eval()(x.to(device)).cpu()
    rebuilt.cpu()
    if not torch.allclose(given, again, rtol=0, atol=1e-4 * max(1.0, float(given.abs().max()))):
        difference = float((given - again).abs().max())
        raise ExternalModelError(
            f"the factory builds a different network from these weights (outputs differ by up to {difference:.3g}): "
            "it must build the same module, with every parameter and buffer in its state dict")


class WeightsImport:
    """The dashboard's import of weights trained elsewhere for an architecture of the lab's registry: no code runs but
    the lab's (the factory is :func:`robust_core.models.build_model`), and the file is checked from its header on."""

    def import_weights(self, payload: bytes, *, arch: str, dataset: str, arch_kwargs: dict[str, Any] | None = None,
                       name: str | None = None, file_name: str = "weights.safetensors") -> StoredModel:
        """Store the ``.safetensors`` state dict ``payload`` as a network of registry architecture ``arch`` for
        ``dataset`` (with ``arch_kwargs``), after the import checks. InvalidCheckpointError saying why not, with
        the store unchanged."""
        from safetensors.torch import load as load_safetensors_bytes

        from ..checkpoints import EXPORT_META_KEY, MAX_CHECKPOINT_BYTES, InvalidCheckpointError
        from ..external import ModelCheckError
        from ..models import architecture, build_model
        from ..models.size import estimate_parameters
        from ..weights_files import WeightsFileError, safetensors_header

        arch_kwargs = dict(arch_kwargs or {})
        try:
            spec = architecture(arch)
            config = TrainConfig(dataset=dataset, arch=arch, arch_kwargs=arch_kwargs)
            parameters = estimate_parameters(config)
        except (ValueError, TypeError) as exc:
            raise InvalidCheckpointError(f"No network of the registry can be built so: {exc}") from None
        if spec.kind != "torch":
            raise InvalidCheckpointError(f"{spec.title} is fitted on the training images, not imported as weights.")
        try:
            header = safetensors_header(payload, max_bytes=MAX_CHECKPOINT_BYTES)
        except WeightsFileError as exc:
            raise InvalidCheckpointError(f"This is not a safetensors file (or it is corrupted): {exc}.") from None
        if EXPORT_META_KEY in header.metadata:
            raise InvalidCheckpointError("This file is a Robustness Lab checkpoint, which carries its own "
                                         "architecture: import it as one.")
        if parameters is not None and parameters * 4 > header.data_bytes:
            raise InvalidCheckpointError(
                f"The file holds weights for at most {header.data_bytes // 4:,} parameters, and {spec.title} with "
                f"these arguments has {parameters:,}: pick the architecture the weights were trained with.")
        try:
            state = load_safetensors_bytes(payload)
            model = load_into(build_model(arch, dataset, **arch_kwargs), state, origin="The weights")
            return self.add_external(model, dataset=dataset, name=name or f"{spec.title} · {file_name}",
                                     factory=REGISTRY_FACTORY,
                                     factory_kwargs={"arch": arch, "dataset": dataset, **arch_kwargs},
                                     origin=file_name)
        except (ExternalModelError, ModelCheckError) as exc:
            raise InvalidCheckpointError(str(exc)) from None
        except Exception as exc:  # safetensors raises several types for a damaged file
            raise InvalidCheckpointError(f"The weights could not be read: {type(exc).__name__}: {str(exc)[:300]}") \
                from None
