"""Saliency maps through Captum, behind one contract (seed 004, Part 1).

    attribute(model, x, target, method, **kw) -> tensor shaped like x

``x`` is a batch (N, C, H, W) in [0, 1]; ``target`` a class index or one per image. Hyper-parameters
are keyword arguments at call time (Captum's style). The model is used in eval mode and handed back
in the mode it came in; the result is detached, on x's device.

    from robust_core.saliency import attribute, heatmap
    maps = attribute(model, x, y, "integrated_gradients", baseline="blurred", n_steps=64)
    images = heatmap(maps, signed=False)          # (N, H, W) in [0, 1] for display
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SaliencyMethod:
    name: str
    title: str
    paper: str
    needs_conv: bool = False  # Grad-CAM and Guided Grad-CAM read a convolutional layer
    signed: bool = True  # whether the sign of the attribution means something


METHODS: dict[str, SaliencyMethod] = {m.name: m for m in (
    SaliencyMethod("saliency", "Saliency (vanilla gradient)", "Simonyan et al. 2014", signed=False),
    SaliencyMethod("input_x_gradient", "Input × Gradient", "Shrikumar et al. 2016"),
    SaliencyMethod("integrated_gradients", "Integrated Gradients", "Sundararajan et al. 2017"),
    SaliencyMethod("smoothgrad", "SmoothGrad", "Smilkov et al. 2017", signed=False),
    SaliencyMethod("smoothgrad_sq", "SmoothGrad²", "Hooker et al. 2019", signed=False),
    SaliencyMethod("guided_backprop", "Guided Backprop", "Springenberg et al. 2015"),
    SaliencyMethod("deconvolution", "Deconvolution", "Zeiler & Fergus 2014"),
    SaliencyMethod("deeplift", "DeepLift", "Shrikumar et al. 2017"),
    SaliencyMethod("occlusion", "Occlusion", "Zeiler & Fergus 2014"),
    SaliencyMethod("grad_cam", "Grad-CAM", "Selvaraju et al. 2017", needs_conv=True),
    SaliencyMethod("guided_grad_cam", "Guided Grad-CAM", "Selvaraju et al. 2017", needs_conv=True),
)}
BASELINES = ("black", "blurred", "uniform")


def conv_layers(model) -> dict[str, nn.Module]:
    """Named blocks of the model that contain a convolution (where Grad-CAM can look)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        return {}
    return {name: block for name, block in blocks.named_children()
            if any(isinstance(m, nn.Conv2d) for m in block.modules())}


def available_methods(model) -> dict[str, str]:
    """{method: "" if usable on this model, else the reason it is not}."""
    has_conv = bool(conv_layers(model))
    return {name: "" if (has_conv or not m.needs_conv) else f"{m.title} needs a convolutional layer; this model has none"
            for name, m in METHODS.items()}


def make_baseline(x: torch.Tensor, kind: str = "black", *, seed: int = 0) -> torch.Tensor:
    """Integrated Gradients' reference input: black (zeros), blurred (Gaussian, sigma 5 px) or uniform noise."""
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "uniform":
        return torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)).to(x.device, x.dtype)
    if kind == "blurred":
        sigma, radius = 5.0, 10
        t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
        k = k / k.sum()
        c = x.shape[1]
        padded = F.pad(x, (radius, radius, radius, radius), mode="replicate")
        out = F.conv2d(padded, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    raise ValueError(f"baseline must be one of {BASELINES}, not {kind!r}")


def _targets(target, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(target, device=x.device, dtype=torch.long)
    if t.ndim == 0:
        t = t.expand(len(x)).clone()
    if t.shape != (len(x),):
        raise ValueError(f"target must be one class or one per image ({len(x)}), got shape {tuple(t.shape)}")
    return t


def attribute(model, x: torch.Tensor, target, method: str = "saliency", *, baseline: str = "black", n_steps: int = 50,
              nt_samples: int = 20, stdevs: float = 0.15, window: int = 5, stride: int = 2, layer: str | None = None,
              seed: int = 0) -> torch.Tensor:
    """Attribution of ``target``'s logit to every input pixel, shaped like ``x``.

    Args:
        method: a key of :data:`METHODS`.
        baseline, n_steps: Integrated Gradients' reference ("black", "blurred", "uniform") and path steps.
        nt_samples, stdevs: SmoothGrad's noisy samples and noise level (pixel units, [0, 1] scale).
        window, stride: Occlusion's square patch and stride, in pixels (patch filled with 0).
        layer: the block for Grad-CAM (default: the last convolutional block).
        seed: seeds SmoothGrad's noise and the uniform baseline.
    Grad-CAM's coarse map is upsampled bilinearly to the input size and broadcast over channels.
    """
    from captum import attr as captum_attr

    if method not in METHODS:
        raise ValueError(f"Unknown saliency method {method!r}; choose one of {sorted(METHODS)}")
    if not torch.is_floating_point(x) or x.ndim != 4:
        raise ValueError(f"images must be a float tensor (N, C, H, W), got {x.dtype} of shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or infinite values")
    reason = available_methods(model)[method]
    if reason:
        raise ValueError(reason)
    t = _targets(target, x)
    x = x.detach()
    was_training = model.training
    model.eval()
    try:
        if method == "saliency":
            out = captum_attr.Saliency(model).attribute(x, target=t, abs=True)
        elif method == "input_x_gradient":
            out = captum_attr.InputXGradient(model).attribute(x, target=t)
        elif method == "integrated_gradients":
            out = captum_attr.IntegratedGradients(model).attribute(
                x, baselines=make_baseline(x, baseline, seed=seed), target=t, n_steps=n_steps, internal_batch_size=256)
        elif method in ("smoothgrad", "smoothgrad_sq"):
            torch.manual_seed(seed)  # Captum draws its noise from the global generator
            out = captum_attr.NoiseTunnel(captum_attr.Saliency(model)).attribute(
                x, target=t, nt_type=method, nt_samples=nt_samples, stdevs=stdevs, nt_samples_batch_size=nt_samples)
        elif method == "guided_backprop":
            out = captum_attr.GuidedBackprop(model).attribute(x, target=t)
        elif method == "deconvolution":
            out = captum_attr.Deconvolution(model).attribute(x, target=t)
        elif method == "deeplift":
            out = captum_attr.DeepLift(model).attribute(x, target=t, baselines=torch.zeros_like(x))
        elif method == "occlusion":
            c = x.shape[1]
            out = captum_attr.Occlusion(model).attribute(x, target=t, sliding_window_shapes=(c, window, window),
                                                         strides=(c, stride, stride), baselines=0.0)
        else:
            convs = conv_layers(model)
            block = convs[layer] if layer is not None else list(convs.values())[-1]
            if method == "grad_cam":
                cam = captum_attr.LayerGradCam(model, block).attribute(x, target=t, relu_attributions=True)
                out = captum_attr.LayerAttribution.interpolate(cam, x.shape[-2:], interpolate_mode="bilinear")
                out = out.expand_as(x)
            else:
                out = captum_attr.GuidedGradCam(model, block).attribute(x, target=t)
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)  # Captum's hooks may leave gradients on the weights
    return out.detach().to(x.dtype)


def heatmap(attributions: torch.Tensor, *, signed: bool = False, percentile: float = 99.0):
    """Attributions (N, C, H, W) as displayable maps (N, H, W): summed over channels, clipped at the
    ``percentile`` of |values| per image (one hot pixel must not wash out the rest), then scaled to
    [0, 1] (absolute) or [-1, 1] (signed). Returns a NumPy array."""
    a = attributions.detach().float().sum(1)
    flat = a.flatten(1)
    scale = torch.quantile(flat.abs(), percentile / 100, dim=1).clamp_min(1e-12).view(-1, 1, 1)
    a = (a / scale).clamp(-1, 1)
    return (a if signed else a.abs()).cpu().numpy()


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per image between two attribution batches (of |values|)."""
    def ranks(v):
        flat = v.detach().abs().flatten(1).float()
        return flat.argsort(1).argsort(1).float()

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1) + 1e-12)


def randomisation_check(model, x: torch.Tensor, target, method: str, **kw) -> list[tuple[str, float]]:
    """Adebayo et al. 2018's cascading model-randomisation test.

    Re-initialises the model's blocks one by one from the output down (on a copy) and returns
    [(blocks randomised so far, mean rank correlation with the trained model's map)]. A method whose
    maps stay highly correlated with random weights explains the image, not the model.
    """
    import copy

    reference = attribute(model, x, target, method, **kw)
    randomised = copy.deepcopy(model)
    torch.manual_seed(kw.get("seed", 0))
    names = list(dict(randomised.blocks.named_children()))[::-1]
    results = []
    for name in names:
        for module in getattr(randomised.blocks, name).modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.reset_parameters()
        results.append((name, float(rank_correlation(reference, attribute(randomised, x, target, method, **kw)).mean())))
    return results


def deletion_insertion(model, x: torch.Tensor, target, attributions: torch.Tensor, *, steps: int = 20,
                       fill: float = 0.0) -> dict[str, object]:
    """Faithfulness curves: the target's probability as the most-attributed pixels are removed
    (deletion, set to ``fill``) or added to a ``fill`` image (insertion), in ``steps`` equal shares.

    Returns {"fraction": [...], "deletion": [...], "insertion": [...], "deletion_auc", "insertion_auc"}
    averaged over the batch. A faithful map makes deletion fall fast (low AUC) and insertion rise fast.
    """
    t = _targets(target, x)
    n, c, h, w = x.shape
    order = attributions.detach().abs().sum(1).flatten(1).argsort(1, descending=True)  # (N, H*W)
    fractions = [i / steps for i in range(steps + 1)]
    deletion, insertion = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for f in fractions:
                k = int(round(f * h * w))
                mask = torch.zeros(n, h * w, device=x.device)
                if k:
                    mask.scatter_(1, order[:, :k], 1.0)
                mask = mask.view(n, 1, h, w)
                deleted = x * (1 - mask) + fill * mask
                inserted = x * mask + fill * (1 - mask)
                p_del = model(deleted).softmax(1).gather(1, t[:, None]).mean()
                p_ins = model(inserted).softmax(1).gather(1, t[:, None]).mean()
                deletion.append(float(p_del))
                insertion.append(float(p_ins))
    finally:
        model.train(was_training)

    def auc(ys):
        return sum((ys[i] + ys[i + 1]) / 2 for i in range(len(ys) - 1)) / (len(ys) - 1)

    return {"fraction": fractions, "deletion": deletion, "insertion": insertion,
            "deletion_auc": auc(deletion), "insertion_auc": auc(insertion)}


__all__ = ["BASELINES", "METHODS", "SaliencyMethod", "attribute", "colour_lut", "grid_png", "available_methods", "conv_layers", "deletion_insertion",
           "heatmap", "make_baseline", "randomisation_check", "rank_correlation"]


def colour_lut(name: str = "Viridis"):
    """A (256, 3) uint8 lookup table sampled from one of Plotly's colour scales (the page's colours)."""
    import numpy as np
    from plotly.colors import sample_colorscale, unlabel_rgb

    colours = sample_colorscale(name, [i / 255 for i in range(256)])
    return np.array([unlabel_rgb(c) for c in colours], dtype=np.float64).round().astype(np.uint8)


def grid_png(cells, *, row_labels, col_labels, images=None, colour_map: str = "Viridis", scale: int = 4,
             overlay: float = 0.65) -> bytes:
    """A PNG of a grid of heatmaps: ``cells[r][c]`` an (H, W) map in [0, 1] (or [-1, 1], shown with RdBu)
    or None (blank). With ``images[c]`` (H, W) in [0, 1], each map is blended over its input image."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    lut, diverging = colour_lut(colour_map), colour_lut("RdBu_r")
    h, w = next(np.asarray(m).shape for row in cells for m in row if m is not None)
    cw, ch, left, top = w * scale + 8, h * scale + 8, 150, 40
    canvas = Image.new("RGB", (left + cw * len(col_labels), top + ch * len(row_labels)), "white")
    draw = ImageDraw.Draw(canvas)
    for c, label in enumerate(col_labels):
        draw.text((left + c * cw + 4, 4), str(label)[:28], fill="black")
    for r, label in enumerate(row_labels):
        draw.text((4, top + r * ch + ch // 2 - 6), str(label)[:24], fill="black")
        for c in range(len(col_labels)):
            m = cells[r][c]
            if m is None:
                continue
            m = np.asarray(m, dtype=np.float64)
            if m.min() < 0:
                rgb = diverging[np.clip(((m + 1) / 2 * 255).round(), 0, 255).astype(int)]
            else:
                rgb = lut[np.clip((m * 255).round(), 0, 255).astype(int)]
            if images is not None:
                grey = np.repeat((np.clip(images[c], 0, 1) * 255)[..., None], 3, axis=2)
                rgb = (overlay * rgb + (1 - overlay) * grey).round().astype(np.uint8)
            tile = Image.fromarray(rgb.astype(np.uint8)).resize((w * scale, h * scale), Image.NEAREST)
            canvas.paste(tile, (left + c * cw + 4, top + r * ch + 4))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
