"""Gradient-Feature Alignment (GFA), the regulariser of "DeepDefense: Layer-Wise Gradient-Feature
Alignment" (Lin et al., arXiv 2511.13749).

Only the paper's abstract is available to us; what it says, and what this module implements:
the gradient of the loss with respect to a layer's features should point along the features
themselves (radially), so that moving the features tangentially -- the directions adversarial
perturbations exploit -- barely changes the loss. Per example and per chosen layer l, with
features h_l and g_l = dL/dh_l kept in the graph (double backpropagation):

    c_l = <g_l, h_l> / (||g_l|| ||h_l|| + 1e-12)        (cosine between gradient and features)
    L_GFA = mean over layers and batch of (1 - c_l^2)   (share of gradient energy that is tangential)

The penalty is sign-agnostic because for ReLU networks <grad_x CE, x> <= 0 on correctly
classified points: pushing c towards +1 would fight the task loss.
Layer 0 is the input as the model sees it after its own normalisation (centred); hidden layers
are block outputs after their activation. Variant "first" uses layer 0 only, "deep" every layer.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..tensors import eval_mode

INPUT_LAYER = "input"
VARIANTS = ("first", "deep")
# The cosine is scale-invariant, so rescaling inputs to [-1, 1] is the same as centring them on 0.5.
INPUT_CENTRES = ("model", "pm1")


def layer_names(model) -> list[str]:
    """Names of the layers GFA can align: the input, then each hidden block of the model."""
    if not hasattr(model, "forward_with_features"):
        raise TypeError(f"{type(model).__name__} does not expose its features (forward_with_features); "
                        "GFA needs one of the project's networks")
    return [INPUT_LAYER, *model.feature_block_names]


def resolve_layers(model, layers: str | Sequence[str]) -> list[int]:
    """Indices into ``forward_with_features``' feature list for a variant name or explicit names."""
    names = layer_names(model)
    if isinstance(layers, str):
        if layers == "first":
            return [0]
        if layers == "deep":
            return list(range(len(names)))
        layers = [layers]
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise ValueError(f"unknown GFA layer(s) {unknown}; this model has {names}")
    return [names.index(name) for name in layers]


def task_loss(logits: torch.Tensor, y: torch.Tensor, loss: str = "ce", label_smoothing: float = 0.0,
              reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy, or the paper's option: squared error between softmax and one-hot labels."""
    if loss == "ce":
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing, reduction=reduction)
    if loss == "mse":
        per_example = (logits.float().softmax(1) - F.one_hot(y, logits.shape[1]).float()).pow(2).sum(1)
        return per_example.mean() if reduction == "mean" else per_example.sum() if reduction == "sum" else per_example
    raise ValueError(f"GFA task loss must be 'ce' or 'mse', not {loss!r}")


def _centred(features: list[torch.Tensor], x: torch.Tensor, index: int, input_centre: str) -> torch.Tensor:
    if index == 0 and input_centre == "pm1":
        return (x - 0.5).to(features[0].dtype)
    return features[index]


def alignment_cosines(model, x: torch.Tensor, y: torch.Tensor, *, layers: str | Sequence[str] = "deep",
                      loss: str = "ce", input_centre: str = "model", create_graph: bool = False,
                      label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Per-example cosines c_l between dL/dh_l and h_l: returns (logits, cosines (N, n_layers), layer names).

    With ``create_graph=True`` the cosines stay differentiable with respect to the weights (double
    backpropagation), which is what training needs; otherwise they are detached measurements.
    """
    if input_centre not in INPUT_CENTRES:
        raise ValueError(f"input_centre must be one of {INPUT_CENTRES}, not {input_centre!r}")
    indices = resolve_layers(model, layers)
    names = layer_names(model)
    with torch.enable_grad():
        # The input must require grad even when only hidden layers are asked for: the normalised input
        # (layer 0) is otherwise a constant of the graph, and autograd refuses a gradient for it.
        x_in = x.detach().requires_grad_(True)
        logits, features = model.forward_with_features(x_in)
        # Sum, not mean: each example's gradient is then the gradient of its own loss (no 1/N factor;
        # the cosine would not care, but the values logged stay comparable across batch sizes).
        total = task_loss(logits, y, loss, label_smoothing, reduction="sum")
        wrt = [x_in if (i == 0 and input_centre == "pm1") else features[i] for i in indices]
        grads = torch.autograd.grad(total, wrt, create_graph=create_graph)
    cosines = []
    for i, g in zip(indices, grads):
        h = _centred(features, x_in, i, input_centre).flatten(1).float()
        g = g.flatten(1).float()
        cosines.append((g * h).sum(1) / (g.norm(dim=1) * h.norm(dim=1) + 1e-12))
    c = torch.stack(cosines, dim=1)
    if not create_graph:
        c, logits = c.detach(), logits.detach()
    return logits, c, [names[i] for i in indices]


def gfa_penalty(cosines: torch.Tensor) -> torch.Tensor:
    """L_GFA = mean(1 - c^2) over examples and layers; in [0, 1], 0 when every gradient is radial.

    An example whose gradient is exactly zero (a saturated softmax) has c = 0 and adds a constant 1,
    which moves no weight: it shifts the logged value, not the training.
    """
    return (1 - cosines.pow(2)).mean()


@torch.no_grad()
def measure_alignment(model, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500,
                      input_centre: str = "model") -> dict[str, float]:
    """Mean |c_l| per layer over (x, y), the model in eval mode: the alignment metric stored with models."""
    sums: torch.Tensor | None = None
    names: list[str] = []
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            _, c, names = alignment_cosines(model, x[i : i + batch_size], y[i : i + batch_size], layers="deep",
                                            input_centre=input_centre)
            part = c.abs().sum(0)
            sums = part if sums is None else sums + part
    if sums is None:
        return {}
    return {name: float(v) / len(x) for name, v in zip(names, sums)}
