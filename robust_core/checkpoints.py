"""Exported checkpoints: one ``.safetensors`` file whose header metadata carries the model's ``meta.json``, read and
checked whole before anything joins the store, and the network rebuilt from metadata and tensors."""
from __future__ import annotations

import json
from typing import Any

import torch
from safetensors.torch import load as load_safetensors_bytes

from .models import architecture, build_model
from .models.size import estimate_parameters
from .training import TrainConfig
from .weights_files import SafetensorsHeader, WeightsFileError, safetensors_header

# The factory of weights imported for an architecture of the lab's registry (ModelStore.import_weights): the one
# external factory an uploaded checkpoint may name, since it is the lab's own code.
REGISTRY_FACTORY = "robust_core.models:build_model"
# Key of the JSON metadata inside an exported safetensors header.
EXPORT_META_KEY = "robustness_lab.meta"
# The largest exported checkpoint imported: the lab's largest network (Madry et al.'s CNN) is 13 MB.
MAX_CHECKPOINT_BYTES = 200 * 1024 * 1024


class StoreError(Exception):
    """A store operation could not be done; the message says why and nothing was changed."""


class InvalidCheckpointError(StoreError):
    """A file is not a Robustness Lab checkpoint, or it is corrupted."""


def read_checkpoint(payload: bytes, *, max_bytes: int = MAX_CHECKPOINT_BYTES
                    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Parse and fully validate an exported checkpoint: (metadata, tensors).

    What the header declares is checked before anything is allocated: the tensors must tile the file's data exactly
    (:func:`robust_core.weights_files.safetensors_header`), and the network its configuration describes must have no
    more parameters than the file holds weights for, so crafted metadata cannot make the import build a huge model."""
    if not payload:
        raise InvalidCheckpointError("The file is empty.")
    try:
        header = safetensors_header(payload, max_bytes=max_bytes)
    except WeightsFileError as exc:
        raise InvalidCheckpointError(
            f"This is not a safetensors file (or it is corrupted): {exc}. "
            "Upload a .safetensors file exported from Robustness Lab's Models page."
        ) from exc
    raw_meta = header.metadata.get(EXPORT_META_KEY)
    if raw_meta is None:
        raise InvalidCheckpointError(
            "This safetensors file has no Robustness Lab metadata: it was not exported from Robustness Lab, "
            "so its architecture and training configuration are unknown."
        )
    try:
        meta = json.loads(raw_meta)
        config = TrainConfig.from_dict(meta["config"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidCheckpointError(f"The checkpoint's metadata is invalid: {exc}") from exc
    if config.external and config.arch_kwargs["factory"] == REGISTRY_FACTORY:
        # Weights trained elsewhere for an architecture of the lab's registry: the lab's own code builds it.
        kwargs = dict(config.arch_kwargs["kwargs"])
        try:
            registry_config = TrainConfig(dataset=config.dataset, arch=kwargs.pop("arch"), arch_kwargs={
                k: v for k, v in kwargs.items() if k != "dataset"})
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidCheckpointError(f"The checkpoint's metadata is invalid: {exc}") from exc
        if kwargs.get("dataset") != config.dataset:
            raise InvalidCheckpointError("The checkpoint's metadata is invalid: two different datasets.")
        check_declared_size(registry_config, header)
    elif config.external:
        # Its network is built by Python code the metadata names: an uploaded file never makes the lab run code.
        raise InvalidCheckpointError(
            f"This checkpoint is a network the lab did not train, built by the Python function "
            f"{config.arch_kwargs['factory']!r}: the dashboard does not run code named by a file. Import it on the "
            "command line, where that code is: python -m robust_core.evaluate --model-factory "
            f"{config.arch_kwargs['factory']} --weights <its weights file> --dataset {config.dataset}.")
    if meta.get("id") != config.config_hash():
        raise InvalidCheckpointError("The checkpoint's id does not match its training configuration (edited or "
                                     "corrupted metadata).")
    check_declared_size(config, header)
    try:
        state = load_safetensors_bytes(payload)
    except Exception as exc:  # safetensors raises several types for garbage input
        raise InvalidCheckpointError(f"This safetensors file is corrupted: {exc}.") from exc
    try:
        model_from_state(meta, state)
    except InvalidCheckpointError:
        raise
    except Exception as exc:
        raise InvalidCheckpointError(f"The weights do not fit architecture {config.arch!r}: {exc}") from exc
    return meta, state


def check_declared_size(config: TrainConfig, header: SafetensorsHeader) -> None:
    """Refuse a configuration whose network is larger than the file's weights, before it is built."""
    try:
        parameters = estimate_parameters(config)
    except (ValueError, TypeError) as exc:
        raise InvalidCheckpointError(
            f"The checkpoint's configuration describes no network that can be built: {exc}") from exc
    # Every parameter is exported as float32 (buffers such as the input normalisation come on top), so a file holds at
    # least 4 bytes per parameter of its network.
    if parameters is not None and parameters * 4 > header.data_bytes:
        raise InvalidCheckpointError(
            f"The weights do not fit architecture {config.arch!r}: its configuration describes a network of "
            f"{parameters:,} parameters, but the file holds weights for at most {header.data_bytes // 4:,} "
            "(edited or corrupted metadata). Nothing was built.")


def state_dict_of(model) -> dict[str, torch.Tensor]:
    # safetensors wants contiguous CPU tensors that share no memory.
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def model_from_state(meta: dict[str, Any], state: dict[str, torch.Tensor]):
    config = TrainConfig.from_dict(meta["config"])
    if config.external:
        from .external import build_from_factory, load_into, weights_digest

        if weights_digest(state) != config.arch_kwargs["weights_sha256"]:
            raise InvalidCheckpointError("The weights are not the ones this external model was registered with "
                                         "(their SHA-256 differs).")
        model = build_from_factory(config.arch_kwargs["factory"], config.arch_kwargs["kwargs"])
        return load_into(model, state, origin=f"the weights of {config.arch_kwargs['factory']}")
    arch_kwargs = dict(config.arch_kwargs)
    if architecture(config.arch).kind == "fitted":
        model = build_model(config.arch, config.dataset, **{**arch_kwargs, "seed": config.seed})
        model.load_state_dict(state)
        if config.arch == "knn":  # a k-NN memorises its training split: refit from the dataset
            from .data import load_dataset

            data = load_dataset(config.dataset)
            x, y = data.train_x, data.train_y
            if config.train_subset is not None:
                x, y = x[: config.train_subset], y[: config.train_subset]
            model.fit(x, y)
        return model
    if config.dropout:
        arch_kwargs["dropout"] = config.dropout
    model = build_model(config.arch, config.dataset, **arch_kwargs)
    model.load_state_dict(state, strict=True)
    for name, tensor in model.state_dict().items():
        if not torch.isfinite(tensor).all():
            raise InvalidCheckpointError(f"Tensor {name!r} holds NaN or infinite values.")
    return model.eval()


__all__ = ["EXPORT_META_KEY", "MAX_CHECKPOINT_BYTES", "InvalidCheckpointError", "StoreError", "check_declared_size",
           "model_from_state", "read_checkpoint", "state_dict_of"]
