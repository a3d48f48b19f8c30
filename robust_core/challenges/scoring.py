"""Scores of class-challenge submissions, computed on the server from what the student submitted: an image (the painted
perturbation, the drawing) or an answer. Nothing a client sends as a score is read: :func:`read_payload` keeps only
the image or the answer of a submission, and every number on the board comes from here.

Units: images are float (1, C, H, W) in [0, 1]; perturbation norms are in that pixel scale (an L∞ of 0.3 is 30% of
the black-to-white range on some pixel; an L2 of 2 is ||x' - x||_2 over all C*H*W values).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from ..tensors import eval_mode

CANVAS_SCALE = 10  # canvas pixels per image pixel: a 280x280 canvas for 28x28 digits (brush widths are in canvas px)
# Pixels: a 320-pixel canvas at 4 device pixels per CSS pixel, the most a browser renders; also the dashboard's
# canvas reader's limit (lab_pages._canvas), which decodes every stroke a student draws, so it bounds what a forged
# canvas value costs the server (5 MB decoded, and this function's float32 planes).
MAX_CANVAS_SIDE = 1280


class BadSubmission(ValueError):
    """A submission that cannot be scored (no image, the wrong size, NaN, outside the budget); says why."""


def canvas_direction(rgba, shape: tuple[int, int, int]) -> torch.Tensor:
    """The perturbation direction a student painted, (1, C, H, W) in [-1, 1]: a white stroke brightens (+1), a black
    one darkens (-1), a transparent pixel leaves the image alone (0), half-transparent strokes count half. Each image
    pixel is the area average of the canvas pixels over it (a browser may render the canvas at 1.25 or 2 device pixels
    per CSS pixel, so the painting's size is any size from the image's up, not a fixed multiple). ``rgba``: (H', W', 4)
    values 0-255, the canvas's image data. The same direction is used on every channel."""
    import torch.nn.functional as F

    paint = np.asarray(rgba)
    channels, height, width = shape
    if paint.ndim != 3 or paint.shape[2] != 4:
        raise BadSubmission(f"the painting must be an RGBA image (height, width, 4), not of shape {paint.shape}")
    if paint.shape[0] < height or paint.shape[1] < width or max(paint.shape[:2]) > MAX_CANVAS_SIDE:
        raise BadSubmission(f"the painting is {paint.shape[1]}x{paint.shape[0]} pixels: it must be from the image's "
                            f"{width}x{height} to {MAX_CANVAS_SIDE} pixels a side")
    if paint.dtype != np.uint8 and not (np.isfinite(paint).all() and paint.min() >= 0 and paint.max() <= 255):
        raise BadSubmission("the painting holds values outside 0-255")
    brightness = paint[..., :3].mean(axis=2, dtype=np.float32) / 255.0  # 1 white, 0 black
    direction = torch.from_numpy((2.0 * brightness - 1.0) * (paint[..., 3].astype(np.float32) / 255.0))
    blocks = F.adaptive_avg_pool2d(direction[None, None], (height, width))
    return blocks.expand(1, channels, height, width).float().clone()


def perturbed(x: torch.Tensor, direction: torch.Tensor, *, norm: str, budget: float,
              strength: float = 1.0) -> torch.Tensor:
    """``x`` moved along ``direction`` by ``strength`` (0-1) of the budget, then clipped to [0, 1].

    L∞: every pixel moves by at most strength * budget (a full-strength stroke by exactly that). L2: the painted
    direction is scaled to an L2 norm of strength * budget, wherever and however widely it was painted. Clipping only
    shrinks the change, so the result always lies within the budget. Computed in float64, returned float32."""
    if not (math.isfinite(strength) and 0.0 <= strength <= 1.0):
        raise BadSubmission(f"strength must lie in [0, 1], not {strength}")
    d = direction.double()
    if norm == "linf":
        delta = strength * budget * d
    else:
        length = float(d.norm())
        delta = d * (strength * budget / length) if length > 0 else torch.zeros_like(d)
    return (x.double() + delta).clamp(0.0, 1.0).float()


def perturbation_norms(x: torch.Tensor, x_adv: torch.Tensor) -> dict[str, float]:
    """L∞ and L2 of ``x_adv - x`` (pixel scale), in float64."""
    delta = (x_adv.double() - x.double()).flatten()
    return {"linf": float(delta.abs().max()) if delta.numel() else 0.0, "l2": float(delta.norm())}


def budget_slack(pixels: int) -> float:
    """How far a submission's measured norm may exceed its budget through float32 rounding alone: each of the image's
    values and of the submitted image's is rounded by at most 2^-24 (values in [0, 1]), so the difference moves by at
    most 2^-23 per value, and its L2 norm by sqrt(pixels) * 2^-23. Any larger excess is a forged image."""
    return math.sqrt(pixels) * 2.0 ** -23


@torch.no_grad()
def readings(models: Mapping[str, object], image: torch.Tensor) -> dict[str, dict]:
    """Each model's reading of one image: {name: {"class": argmax, "p": that class's probability, "probs": [...]}}.
    Networks run in eval mode (given back as they came); fitted baselines through their ``predict_proba``."""
    out = {}
    for name, model in models.items():
        if hasattr(model, "predict_proba"):
            probs = model.predict_proba(image)
        else:
            with eval_mode(model):
                probs = torch.softmax(model(image).double(), dim=1)
        probs = probs.detach().double().cpu()[0]
        if not torch.isfinite(probs).all():
            raise BadSubmission(f"{name} gave no finite reading for this image")
        label = int(probs.argmax())
        out[name] = {"class": label, "p": float(probs[label]), "probs": [round(float(p), 6) for p in probs]}
    return out


def check_image(image, shape: tuple[int, int, int]) -> torch.Tensor:
    """A submitted image as a (1, C, H, W) float32 tensor in [0, 1], or BadSubmission saying what is wrong."""
    try:
        array = np.asarray(image, dtype=np.float32)
    except (TypeError, ValueError):
        raise BadSubmission("the submission holds no image") from None
    if array.size != math.prod(shape):
        raise BadSubmission(f"the image has {array.size} values; a {shape[2]}x{shape[1]} image with {shape[0]} "
                            f"channel(s) has {math.prod(shape)}")
    if not np.isfinite(array).all():
        raise BadSubmission("the image holds NaN or infinite values")
    if array.min() < 0 or array.max() > 1:
        raise BadSubmission("the image's values must lie in [0, 1]")
    return torch.from_numpy(array.reshape(1, *shape).copy())


def score_fool(models: Mapping[str, object], *, x: torch.Tensor, label: int, x_adv: torch.Tensor, norm: str,
               budget: float) -> dict:
    """A fool-it-by-hand submission: the perturbation's norms, each model's reading of ``x_adv``, and which models it
    fools (reads as another class than ``label``). Refuses an image further from ``x`` than ``budget`` in ``norm``
    (beyond float32 rounding, :func:`budget_slack`): the page never makes one, so it was forged."""
    norms = perturbation_norms(x, x_adv)
    if norms[norm] > budget + budget_slack(x.numel()):
        raise BadSubmission(f"the change's {norm.upper()} norm is {norms[norm]:.4g}, above the budget {budget:g}")
    read = readings(models, x_adv)
    return {"linf": norms["linf"], "l2": norms["l2"], "norm": norms[norm], "readings": read,
            "fooled": [name for name, r in read.items() if r["class"] != label]}


def score_split(models: Mapping[str, object], *, image: torch.Tensor, target: int, drawn: int | None,
                knn=None) -> dict:
    """A split-the-models drawing: model A (the first of ``models``) must read ``target`` and model B (the second)
    must not. Ranked by how sure A is of ``target`` times how unsure B is; with ``drawn`` and a k-NN, times the k-NN's
    share of votes for ``drawn`` (a drawing that no longer looks like what it should scores 0)."""
    (a, model_a), (b, model_b) = list(models.items())[:2]
    read = readings({a: model_a, b: model_b}, image)
    if knn is not None:
        read.update(readings({"k-NN": knn}, image))
    p_a, p_b = read[a]["probs"][target], read[b]["probs"][target]
    success = read[a]["class"] == target and read[b]["class"] != target
    looks = read["k-NN"]["probs"][drawn] if knn is not None and drawn is not None else 1.0
    return {"readings": read, "success": success, "split": p_a * (1.0 - p_b) * looks, "looks_like": looks}


def read_payload(kind: str, payload: Mapping) -> dict:
    """What the server takes from a client's submission: the painted canvas and the strength (fool), the drawing (split)
    or the answer (guess). Every other field, a claimed score, rank or reading among them, is dropped here."""
    if not isinstance(payload, Mapping):
        raise BadSubmission("a submission is a set of named fields")
    if kind == "guess":
        answer = payload.get("answer")
        if isinstance(answer, bool) or not isinstance(answer, (int, float)) or not math.isfinite(answer):
            raise BadSubmission("the answer must be a finite number")
        return {"answer": float(answer)}
    if kind == "fool":
        if "paint" not in payload:
            raise BadSubmission("the submission holds no painting")
        strength = payload.get("strength", 1.0)
        if isinstance(strength, bool) or not isinstance(strength, (int, float)):
            raise BadSubmission("strength must be a number")
        return {"paint": payload["paint"], "strength": float(strength)}
    if "image" not in payload:
        raise BadSubmission("the submission holds no drawing")
    return {"image": payload["image"]}


__all__ = ["BadSubmission", "CANVAS_SCALE", "budget_slack", "canvas_direction", "check_image", "perturbation_norms",
           "perturbed", "read_payload", "readings", "score_fool", "score_split"]
