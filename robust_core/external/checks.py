"""What a network the lab did not train must satisfy before it is evaluated, each failure with a message that says
what to change: the field's common evaluation bugs (a softmax in front of the attacks, batch norm or dropout left in
training mode, a randomised forward pass evaluated without EOT) are found here, not in a wrong robust accuracy.

    from robust_core.external import check_model
    report = check_model(model, dataset="cifar10", images=x[:64], labels=y[:64])
    report.raise_for_problems()   # ModelCheckError listing every problem; report.warnings: what to know
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data import dataset_info
from ..evaluation.sanity import returns_probabilities
from ..tensors import ce_loss, eval_mode, input_gradient

# Two probabilities further apart than this, for the same image, are a different prediction, not rounding: float32
# forward passes of one network on one input agree to ~1e-6, and bf16 kernels (AVX-512 machines) to ~1e-2 in the
# logits, i.e. well under 1e-2 in probability after the softmax's contraction (its Lipschitz constant is 1/2).
PROBABILITY_TOLERANCE = 2e-2
# Rows of non-negative outputs summing to 1 within this are probabilities (a float32 softmax sums to 1 within ~1e-6).
SUM_TO_ONE_TOLERANCE = 1e-4


class ModelCheckError(ValueError):
    """The network cannot be evaluated as it is; the message lists every problem and what to change."""


@dataclass
class ModelCheckReport:
    """``problems``: what makes an evaluation wrong (the import refuses them); ``warnings``: what the evaluation must
    take into account; ``train_eval_gap``: the largest probability change between train and eval mode."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    was_training: bool = False
    train_eval_gap: float = 0.0
    randomised: bool = False
    clean_accuracy: float | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            raise ModelCheckError("The model cannot be evaluated as it is:\n- " + "\n- ".join(self.problems))

    def to_dict(self) -> dict:
        return {"problems": list(self.problems), "warnings": list(self.warnings), "was_training": self.was_training,
                "train_eval_gap": self.train_eval_gap, "randomised": self.randomised,
                "clean_accuracy": self.clean_accuracy}


def _probe_images(shape, count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((count, *shape), generator=generator)


def check_model(model: nn.Module, *, dataset: str, images: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, seed: int = 0) -> ModelCheckReport:
    """Check ``model`` against ``dataset``'s images: shape and channels, one logit per class, eval mode (and how much
    train mode changes the outputs), inputs left unchanged in [0, 1], a softmax last layer, a random forward pass,
    input gradients, and (given ``images``/``labels``, test images in [0, 1]) accuracy above chance.

    The model is put in eval mode and left there (the lab evaluates in eval mode); nothing else about it changes:
    the train-mode probe runs on a copy, so batch-norm statistics are not updated."""
    info = dataset_info(dataset)
    if not isinstance(model, nn.Module):
        return ModelCheckReport(problems=[f"it is not a torch.nn.Module but a {type(model).__qualname__} object"])
    report = ModelCheckReport(was_training=bool(model.training))
    model.eval()
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    x = (images if images is not None else _probe_images(info.shape, 8, seed)).to(device)
    if tuple(x.shape[1:]) != tuple(info.shape):
        raise ValueError(f"the check images are {tuple(x.shape[1:])}, not {dataset}'s {info.shape}")
    if x.min() < 0 or x.max() > 1:
        raise ValueError("the check images must lie in [0, 1]")
    given = x.clone()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # any failure of the user's forward pass is the finding
        report.problems.append(
            f"it does not take {dataset}'s images, a float tensor (N, {info.shape[0]}, {info.shape[1]}, "
            f"{info.shape[2]}) in [0, 1]: its forward pass raised {type(exc).__name__}: {str(exc)[:300]}")
        return report
    if not isinstance(out, torch.Tensor) or out.shape != (len(x), info.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        report.problems.append(f"it returns {shape} for {len(x)} images, not ({len(x)}, {info.num_classes}): one "
                               f"logit per class of {dataset} ({info.num_classes} classes)")
        return report
    if not torch.equal(x, given):
        report.problems.append("its forward pass changes its input in place (an in-place normalisation or clamp): "
                               "attacks would see altered images; copy the input first")
    if not torch.isfinite(out).all():
        report.problems.append("it returns NaN or infinite outputs for images in [0, 1]")
        return report
    if returns_probabilities(out, atol=SUM_TO_ONE_TOLERANCE):
        report.problems.append("its outputs are non-negative and sum to 1: it returns probabilities (a softmax last "
                               "layer), but attacks need logits; a cross-entropy on probabilities is nearly flat, "
                               "so every gradient attack would look weaker than it is. Remove the softmax.")
    elif torch.allclose(out.exp().sum(1), torch.ones(len(out), device=out.device), atol=SUM_TO_ONE_TOLERANCE):
        report.warnings.append("its outputs are log-probabilities (a log-softmax last layer): fine for attacks, "
                               "which only use logit differences")
    with torch.no_grad():
        again = model(x)
    gap = float((torch.softmax(again, 1) - torch.softmax(out, 1)).abs().max())
    if gap > PROBABILITY_TOLERANCE:
        report.randomised = True
        report.warnings.append(
            f"two forward passes of the same images differ (probabilities by up to {gap:.2f}): a randomised "
            "model. A single gradient sample then misleads attacks; evaluate with EOT (Athalye et al. 2018: the "
            "attack's gradient averaged over many forward passes) before calling it robust")
    report.train_eval_gap = _train_eval_gap(model, x, out)
    if report.train_eval_gap > PROBABILITY_TOLERANCE:
        report.warnings.append(
            f"train mode changes its probabilities by up to {report.train_eval_gap:.2f} (batch norm or dropout): "
            "the lab evaluates it in eval mode" + (", where it was not when given" if report.was_training else ""))
    elif report.was_training:
        report.warnings.append("it was in training mode; the lab evaluates it in eval mode")
    _check_gradients(model, x, out, report)
    if images is not None and labels is not None:
        report.clean_accuracy = float((out.argmax(1).cpu() == labels.cpu()).float().mean())
        if report.clean_accuracy <= 2.0 / info.num_classes:
            report.warnings.append(
                f"it classifies {100 * report.clean_accuracy:.0f}% of {len(x)} test images correctly, near chance "
                f"({100 / info.num_classes:.0f}%): does it expect images in [0, 1] with its normalisation inside "
                "the module, as the lab gives them? (A network trained on normalised or 0-255 inputs needs its "
                "preprocessing as its first layer.)")
    return report


def _train_eval_gap(model: nn.Module, x: torch.Tensor, eval_out: torch.Tensor) -> float:
    """The largest probability change train mode makes, measured on a copy (train mode updates batch-norm
    statistics). 0 when the model cannot be copied or fails in train mode (a batch of 1 with batch norm)."""
    try:
        probe = copy.deepcopy(model).train()
        generator_state = torch.random.get_rng_state()
        with torch.no_grad():
            out = probe(x)
        torch.random.set_rng_state(generator_state)
    except Exception:
        return 0.0
    return float((torch.softmax(out, 1) - torch.softmax(eval_out, 1)).abs().max())


def _check_gradients(model: nn.Module, x: torch.Tensor, out: torch.Tensor, report: ModelCheckReport) -> None:
    try:
        with eval_mode(model):
            _, grad = input_gradient(ce_loss(model, out.argmax(1)), x)
    except RuntimeError as exc:
        report.problems.append(f"no gradient flows back to its input ({str(exc)[:200]}): gradient attacks need a "
                               "differentiable forward pass (use BPDA for a non-differentiable preprocessing)")
        return
    if not torch.isfinite(grad).all():
        report.problems.append("its input gradient holds NaN or infinite values")
    elif (grad.flatten(1).abs().amax(1) == 0).all():
        report.warnings.append("its loss gradient is exactly zero for every probe image (a quantising or "
                               "thresholding layer): gradient attacks cannot move them; trust the Square attack's "
                               "figure, not PGD's (gradient masking)")
