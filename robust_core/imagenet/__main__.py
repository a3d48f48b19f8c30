"""Command line for photos on ImageNet networks: what the dashboard's photo views show, without the dashboard.

    python -m robust_core.imagenet predict --photo chelsea
    python -m robust_core.imagenet fool --photo chelsea --target stingray --out fooled.png
    python -m robust_core.imagenet saliency --photo my.jpg --method grad_cam --out map.png
    python -m robust_core.imagenet visualize --target tarantula --steps 256 --out tarantula.png

``--photo`` is a shipped photo's name (chelsea, coffee, astronaut, rocket) or a JPEG/PNG/WebP file; ``--model`` is
efficientnet_lite0 (offline, the default), a torchvision classifier's name, and ``--weights`` a file of one's own.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def _photo(text: str) -> torch.Tensor:
    from .photos import load_photo_file, load_shipped_photo, shipped_photos

    return load_shipped_photo(text) if text in shipped_photos() else load_photo_file(text)


def _class(text: str, names: list[str]) -> int:
    if text.isdigit() and int(text) < len(names):
        return int(text)
    matches = [i for i, n in enumerate(names) if n.lower() == text.lower()] or \
              [i for i, n in enumerate(names) if text.lower() in n.lower()]
    if not matches:
        raise SystemExit(f"no ImageNet class matches {text!r}")
    return matches[0]


def _save(path: str, images: list[np.ndarray]) -> None:
    from PIL import Image

    row = np.concatenate([np.clip(i, 0, 1) for i in images], axis=1)
    Image.fromarray((row * 255).round().astype(np.uint8)).save(path)
    print(f"wrote {path}")


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x[0].detach().cpu().permute(1, 2, 0).numpy()


def main(argv: list[str] | None = None) -> int:
    from .models import WeightsNotAvailable, load_imagenet_model, top_k
    from .photos import PhotoError

    parser = argparse.ArgumentParser(prog="python -m robust_core.imagenet", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["predict", "fool", "saliency", "visualize"])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--weights", help="a .safetensors or .pth file for --model's architecture")
    parser.add_argument("--photo", default="chelsea")
    parser.add_argument("--target", default="stingray", help="class name (or part of it) or index")
    parser.add_argument("--eps-max", type=float, default=16, help="fool: largest L∞ ε searched, in 1/255 units")
    parser.add_argument("--method", default="saliency", help="saliency: a robust_core.saliency method")
    parser.add_argument("--steps", type=int, default=256, help="visualize: gradient-ascent steps")
    parser.add_argument("--from-photo", action="store_true", help="visualize: start from --photo instead of noise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="a PNG to write")
    args = parser.parse_args(argv)
    try:
        model = load_imagenet_model(args.model, weights=args.weights)
        names = model.class_names
        needs_photo = args.command != "visualize" or args.from_photo
        x = _photo(args.photo).to(next(model.parameters()).device) if needs_photo else None
    except (WeightsNotAvailable, PhotoError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def show_top(label: str, image: torch.Tensor) -> None:
        print(f"{label}: " + ", ".join(f"{n} {100 * p:.1f}%" for _, n, p in top_k(model, image)[0]))

    if args.command == "predict":
        show_top(Path(args.photo).name, x)
    elif args.command == "fool":
        from .fool import fool_photo, scaled_change

        target = _class(args.target, names)
        result = fool_photo(model, x, target=target, eps_max=args.eps_max / 255, seed=args.seed)
        show_top("before", x)
        if not result.found:
            print(f"targeted PGD found no ε ≤ {args.eps_max}/255 that makes it read {names[target]}")
            return 1
        print(f"smallest ε for {names[target]}: {255 * result.eps:.2f}/255 (the photo that crossed there)")
        show_top("after", result.at_boundary)
        print(f"at {255 * result.strong_eps:.2f}/255, every step run:")
        show_top("after", result.strong)
        if args.out:
            change, factor = scaled_change(result.strong - x)
            print(f"the change in {args.out} is scaled ×{factor:.0f}")
            _save(args.out, [_hwc(x), _hwc(result.strong), _hwc(change)])
    elif args.command == "saliency":
        from ..saliency import attribute, heatmap

        target = int(model(x).argmax(1)) if args.target == "predicted" else _class(args.target, names)
        maps = attribute(model, x, target, args.method, n_steps=20, nt_samples=10, window=48, stride=24, seed=args.seed)
        print(f"{args.method} map of {names[target]}: shape {tuple(maps.shape)}")
        if args.out:
            m = heatmap(maps)[0]
            _save(args.out, [_hwc(x), np.repeat(m[..., None], 3, axis=2)])
    else:
        from ..classviz import RECIPES, visualize
        from .photos import centre_crop

        target = _class(args.target, names)
        recipe = {**RECIPES["photo"], "steps": args.steps}
        start = (dict(start="image", image=centre_crop(x)) if x is not None
                 else dict(start="uniform", shape=(3, 224, 224)))
        result = visualize(model, target, threshold=None, seed=args.seed, **start, **recipe)
        print(f"p({names[target]}) = {float(result.final_probabilities[0, target]):.3f} after "
              f"{int(result.steps_run[0])} steps")
        if args.out:
            _save(args.out, [_hwc(result.final)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
