"""Which torch device the library computes on.

CUDA when a GPU is present, else CPU; ``ROBUST_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``)
overrides, so a user can keep a busy GPU free or a CI machine can force the CPU path.
"""
from __future__ import annotations

import os

import torch

DEVICE_ENV = "ROBUST_DEVICE"


def get_device(override: str | None = None) -> torch.device:
    """The device to compute on: ``override``, then ``$ROBUST_DEVICE``, then CUDA if available, then CPU."""
    requested = override or os.environ.get(DEVICE_ENV)
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"Device {requested!r} was requested (argument or ${DEVICE_ENV}) but CUDA is not available "
                f"on this machine. Unset {DEVICE_ENV} or set it to 'cpu'."
            )
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe_device(device: torch.device | None = None) -> str:
    """A human label such as ``CPU (2 threads)`` or ``CUDA: NVIDIA H100``."""
    device = device or get_device()
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'s' if threads != 1 else ''})"


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 arithmetic is native (fast) on ``device``: CUDA with bf16, or a CPU with AVX-512 BF16 / AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'fp32' or 'bf16' for a configured precision ('auto', 'fp32' or 'bf16') on ``device``."""
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    return precision


_KNOWN_LAYERS = ("torch.", "robust_core.", "timm.", "torchvision.")


def channels_last_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with its conv weights in channels-last layout, for many small CPU passes.

    Why: on CPU, oneDNN runs this project's small convnets 1.2-1.7x faster per forward-backward with
    NHWC weights (measured on batches of 10 in ``benchmarks/classviz_speed.py``). A 1-channel input is
    the same in both layouts, so only the weights decide. A copy, because converting the caller's model
    in place would leave it non-contiguous (safetensors refuses to save such tensors). Models without
    4-D weights, models on other devices, plain callables and modules of other packages than torch,
    timm, torchvision and this library are returned as they are. The attacks'
    evaluations (robust_accuracy, minimal_eps, AutoAttack) attack such a copy: 1.3x faster per pass on the
    shipped CNNs, the same function up to float rounding.
    """
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    if not params or params[0].device.type != "cpu" or not any(p.ndim == 4 for p in params):
        return model
    # Only networks built of known layers: a wrapper of the caller's may count or record its calls, which the
    # calls on a copy would bypass.
    if not all(type(m).__module__.startswith(_KNOWN_LAYERS) for m in model.modules()):
        return model
    import copy

    return copy.deepcopy(model).to(memory_format=torch.channels_last)
