"""What training a configuration would cost, computed from the configuration alone, before anything is built.

    from robust_core.models.size import estimate_parameters, estimate_training_bytes, estimate_training_flops
    estimate_parameters(config)        # 225,034 for the seed CNN on MNIST, as parameter_count(build_model(...))
    estimate_training_bytes(config)    # weights, gradients, optimiser state and one batch's activations
    estimate_training_flops(config)    # multiply-adds x 2, forward and backward, every pass of every epoch

Why analytic: a request for an MLP of forty 8,192-wide layers has 2.6 billion parameters; building it to count them
would allocate the 10 GB the check is there to refuse. Every count here follows the layers that
:func:`robust_core.models.networks.seed_cnn` and :func:`~robust_core.models.networks.mlp` build (a test compares
them with ``parameter_count`` of the built models).
"""
from __future__ import annotations

from dataclasses import dataclass

FLOAT_BYTES = 4
# Training images when a configuration takes them all: an upper bound for every dataset of the lab (MNIST's and
# Fashion-MNIST's training splits are 55,000 images once the 5,000 of validation are set aside, CIFAR-10's 45,000).
FULL_TRAINING_SPLIT = 55_000
# Bytes of optimiser state per parameter (float32): Adam keeps two moments, Nesterov momentum one buffer.
OPTIMIZER_STATE = {"adam": 2 * FLOAT_BYTES, "sgd": 0, "sgd_momentum": FLOAT_BYTES}
# Floats kept per activation unit for the backward pass (the output, its gradient, ReLU masks and pooling indices,
# autocast copies): a generous round factor, since the estimate guards memory, not a benchmark.
ACTIVATION_COPIES = 4
# Forward-backward passes per training image, by method: an attack step is one more forward and backward pass;
# gradient-norm and gradient-alignment regularisers back-propagate through a gradient (about twice a pass).
FIXED_PASSES = {"standard": 1, "fgsm_at": 3, "fgsm_rs_at": 2, "n_fgsm_at": 2, "gnr": 3, "gfa": 3}


@dataclass(frozen=True)
class NetworkSize:
    parameters: int
    macs: int  # multiply-adds of one image's forward pass
    activations: int  # activation units of one image's forward pass (input included)


def _conv_size(shape, num_classes: int, *, filters=(32, 64), conv2=True, pool1=True, dense=128, kernel=3, padding=0,
               **_) -> NetworkSize:
    channels, height, width = shape
    params = macs = 0
    units = channels * height * width
    layers = [(filters[0], pool1)] + ([(filters[1], True)] if conv2 else [])
    for out_channels, pooled in layers:
        height, width = height + 2 * padding - kernel + 1, width + 2 * padding - kernel + 1
        if height < 1 or width < 1:
            raise ValueError(f"the {kernel}x{kernel} convolutions leave no pixels of a {shape[1]}x{shape[2]} image")
        params += channels * out_channels * kernel * kernel + out_channels
        macs += out_channels * height * width * channels * kernel * kernel
        units += out_channels * height * width
        if pooled:
            height, width = height // 2, width // 2
            units += out_channels * height * width
        channels = out_channels
    flat = channels * height * width
    widths = [flat, dense, num_classes] if dense else [flat, num_classes]
    for n_in, n_out in zip(widths, widths[1:]):
        params += n_in * n_out + n_out
        macs += n_in * n_out
        units += n_out
    return NetworkSize(params, macs, units)


def _mlp_size(shape, num_classes: int, *, hidden=(512, 256), **_) -> NetworkSize:
    widths = [shape[0] * shape[1] * shape[2], *[int(h) for h in hidden], num_classes]
    pairs = list(zip(widths, widths[1:]))
    return NetworkSize(sum(a * b + b for a, b in pairs), sum(a * b for a, b in pairs), sum(widths))


def _measured_size(config, info) -> NetworkSize:
    """The size of a network with no formula here (the residual networks), from the network built on PyTorch's
    ``meta`` device: shapes without storage, so a WRN of any width costs no memory to size. Multiply-adds of the
    convolutions and linear layers, activation units of every module's output (an upper bound, as above)."""
    import torch

    from . import build_model

    counts = {"macs": 0, "units": info.shape[0] * info.shape[1] * info.shape[2]}

    def hook(module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            return
        counts["units"] += output[0].numel()
        if isinstance(module, torch.nn.Conv2d):
            counts["macs"] += output[0].numel() * module.in_channels // module.groups * module.kernel_size[0] \
                * module.kernel_size[1]
        elif isinstance(module, torch.nn.Linear):
            counts["macs"] += module.in_features * module.out_features

    with torch.device("meta"):
        model = build_model(config.arch, config.dataset, **config.arch_kwargs)
        leaves = [m for m in model.modules() if not list(m.children())]
        handles = [m.register_forward_hook(hook) for m in leaves]
        model.eval()(torch.zeros(1, *info.shape))
    for handle in handles:
        handle.remove()
    return NetworkSize(sum(p.numel() for p in model.parameters()), counts["macs"], counts["units"])


def network_size(config) -> NetworkSize | None:
    """Parameters, forward multiply-adds and activation units of the network ``config`` describes; None for the
    fitted baselines (logistic regression, k-NN), which are not networks."""
    from ..data import dataset_info
    from . import architecture

    if config.external:
        return None  # built by the researcher's code: its size is what that code makes
    spec = architecture(config.arch)
    if spec.kind != "torch":
        return None
    info = dataset_info(config.dataset)
    kwargs = {**spec.fixed_kwargs, **config.arch_kwargs}
    if config.arch == "mlp":
        return _mlp_size(info.shape, info.num_classes, **kwargs)
    if config.arch.startswith("cnn"):
        return _conv_size(info.shape, info.num_classes, **kwargs)
    return _measured_size(config, info)


def estimate_parameters(config) -> int | None:
    """The number of parameters training ``config`` would build, as :func:`robust_core.models.parameter_count` counts
    them: None for a k-NN, which keeps its training images instead (see :func:`estimate_training_bytes`)."""
    from ..data import dataset_info

    size = network_size(config)
    if size is not None:
        return size.parameters
    if config.arch != "logreg":  # a k-NN, or an external network
        return None
    info = dataset_info(config.dataset)
    return (info.shape[0] * info.shape[1] * info.shape[2] + 1) * info.num_classes


def _pixels(config) -> int:
    from ..data import dataset_info

    shape = dataset_info(config.dataset).shape
    return shape[0] * shape[1] * shape[2]


def _training_images(config) -> int:
    return config.train_subset or FULL_TRAINING_SPLIT


def estimate_training_bytes(config) -> int:
    """Bytes that training ``config`` holds at its peak, beyond the dataset already in memory: float32 weights and
    gradients, the optimiser's state, bf16 copies of the weights (autocast) and one batch's activations."""
    size = network_size(config)
    if size is None:  # a fitted baseline: a flattened copy of the training images and a batch of distances to them
        return FLOAT_BYTES * _training_images(config) * (2 * _pixels(config) + 1000)
    per_parameter = 2 * FLOAT_BYTES + OPTIMIZER_STATE[config.optimizer] + 2
    return size.parameters * per_parameter + config.batch_size * size.activations * FLOAT_BYTES * ACTIVATION_COPIES


def training_passes(config) -> int:
    """Forward-backward passes per training image and epoch (PGD adversarial training: one per attack step, plus
    the training step itself)."""
    from ..training.losses import METHODS

    if config.method in FIXED_PASSES:
        return FIXED_PASSES[config.method]
    steps = {**METHODS[config.method].defaults, **config.method_kwargs}.get("steps", 1)
    return int(steps) + 2  # the attack's steps, the training step, and TRADES' clean pass


def estimate_training_flops(config) -> int:
    """Floating-point operations of training ``config``: 2 per multiply-add, the backward pass twice the forward,
    every pass (:func:`training_passes`) of every image of every epoch. 0 for the fitted baselines, whose cost is
    bounded by their training images."""
    size = network_size(config)
    if size is None:
        return 0
    return 6 * size.macs * training_passes(config) * _training_images(config) * config.epochs


__all__ = ["NetworkSize", "estimate_parameters", "estimate_training_bytes", "estimate_training_flops", "network_size",
           "training_passes"]
