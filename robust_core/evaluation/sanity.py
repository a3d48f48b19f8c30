"""Sanity checks in AutoAttack's spirit: say when an evaluation cannot be trusted."""
from __future__ import annotations

import torch

from ..attacks import get_attack
from ..tensors import ce_loss, eval_mode, input_gradient
from .search import accuracy_at


def returns_probabilities(out: torch.Tensor, *, atol: float) -> bool:
    """Whether outputs (N, K) are probabilities (in [0, 1], each row summing to 1 within ``atol``): a softmax last
    layer, where attacks need logits."""
    ones = torch.ones(len(out), device=out.device)
    return bool(((out >= 0) & (out <= 1)).all()) and torch.allclose(out.sum(1), ones, atol=atol)


def model_sanity_warnings(model, x: torch.Tensor, y: torch.Tensor, *, zero_grad_share: float = 0.1) -> list[str]:
    """Warnings about the model itself: probabilities passed as logits, zero input gradients."""
    warnings = []
    with eval_mode(model):
        with torch.no_grad():
            out = model(x)
        if returns_probabilities(out, atol=1e-3):
            warnings.append("The model's outputs are non-negative and sum to 1: it returns probabilities, not logits. "
                            "Cross-entropy attacks then see a flattened loss and underestimate its weakness; remove "
                            "the softmax.")
        _, grad = input_gradient(ce_loss(model, y), x)
    zero = (grad.flatten(1).abs().amax(1) == 0).float().mean().item()
    if zero > zero_grad_share:
        warnings.append(f"The loss gradient is exactly zero for {100 * zero:.0f}% of the images: gradient attacks "
                        "cannot move them (gradient masking, e.g. saturated or quantised layers). Check with the "
                        "Square attack.")
    return warnings


def sanity_warnings(min_eps_by_model: dict[str, torch.Tensor], *, attack: str, eps_max: float) -> list[str]:
    """Warnings from one attack's results: accuracy that does not fall to zero as eps grows large."""
    spec = get_attack(attack)
    large = {"linf": 0.3, "l2": 3.0, "l1": 30.0}[spec.norm]
    warnings = []
    if spec.kind != "minimal" and eps_max >= large:
        for name, values in min_eps_by_model.items():
            acc = float(accuracy_at(values, [eps_max])[0])
            if acc > 0.1:
                warnings.append(
                    f"{name}: {100 * acc:.0f}% accuracy remains at ε = {eps_max:g} ({spec.norm.upper()}), a "
                    "perturbation large enough to draw another digit. Either the attack is too weak (more steps, "
                    "restarts, APGD) or gradients are masked: compare with the Square attack, which uses no gradient.")
    return warnings
