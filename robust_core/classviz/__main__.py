"""Command line: morph an image toward a class by gradient ascent and save the frames.

    python -m robust_core.classviz --model b2b7 --target 9 --out morph.png
    python -m robust_core.classviz --model b2b7 --target all --start noise --out all_targets.png
    python -m robust_core.classviz --model b2b7 --target 3 --start my_digit.jpg --out morph.gif
    python -m robust_core.classviz --model 2a34 --target 9 --start test:4 --recipe seed --out stalls.png

``--recipe``: smoothed (the default: noise-smoothed gradient and sign steps, which adversarially trained
models need to draw new strokes), seed (a plain normalised gradient, −log p, step 0.1) or photo (Lucent's FFT /
decorrelated-colour parametrisation, for colour datasets); single options override it.

``--start``: zeros, uniform, gaussian, test:INDEX (a test image), or a picture file (made MNIST-like
the way the page does it). ``--out`` ends in .png (a strip of frames; with ``--target all``, the ten
final images) or .gif (an animation; of the ten side by side with ``--target all``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data import DataNotFoundError, dataset_info, load_dataset
from ..digits import NotADigitImage, mnist_style
from ..store import ModelStore
from .export import finals_png, gif, strip_png
from .objectives import OBJECTIVES
from .visualize import RECIPES, STEP_NORMS, visualize


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m robust_core.classviz", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model id (or a unique prefix)")
    p.add_argument("--target", required=True, help="class index, or 'all' for one image per class")
    p.add_argument("--start", default="zeros", help="zeros | uniform | gaussian | test:INDEX | a picture file")
    p.add_argument("--recipe", default="smoothed", choices=sorted(RECIPES),
                   help="smoothed: noise-smoothed gradient, sign steps (works on adversarially trained models); "
                        "seed: plain normalised gradient, step 0.1; photo: FFT parametrisation for colour "
                        "ImageNet-size images. The options below override it.")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=None,
                   help="step size (pixels per step with sign steps, L2 length when normalised)")
    p.add_argument("--step-norm", default=None, choices=sorted(STEP_NORMS))
    p.add_argument("--noise-sigma", type=float, default=None, help="gradient smoothing noise (0: plain gradient)")
    p.add_argument("--noise-samples", type=int, default=None)
    p.add_argument("--loss", default=None, choices=sorted(OBJECTIVES))
    p.add_argument("--threshold", type=float, default=0.99, help="stop once the target probability reaches this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=11, help="frames in the PNG strip")
    p.add_argument("--out", required=True, help="file.png or file.gif")
    p.add_argument("--store", default=None)
    args = p.parse_args(argv)
    try:
        out = Path(args.out)
        if out.suffix.lower() not in (".png", ".gif"):
            raise ValueError("--out must end in .png or .gif")
        store = ModelStore(args.store)
        model_id = store.resolve(args.model)
        entry = store.get(model_id)
        if entry.meta["config"]["arch"] in ("knn", "logreg"):
            raise ValueError(f"{entry.name} has no gradient: class visualisation needs a network")
        model = store.load(model_id)
        info = dataset_info(entry.meta["config"]["dataset"])
        num_classes = info.num_classes
        targets = list(range(num_classes)) if args.target == "all" else [int(args.target)]
        if not all(0 <= t < num_classes for t in targets):
            raise ValueError(f"--target must be 'all' or a class in 0..{num_classes - 1}")
        image = None
        if args.start.startswith("test:"):
            data = load_dataset(entry.meta["config"]["dataset"])
            index = int(args.start.split(":", 1)[1])
            if not 0 <= index < len(data.test_x):
                raise ValueError(f"test image index must be in 0..{len(data.test_x) - 1}")
            image = data.test_x[index]
        elif args.start not in ("zeros", "uniform", "gaussian"):
            path = Path(args.start)
            if not path.is_file():
                raise ValueError(f"--start {args.start!r} is neither a start kind nor a picture file")
            if info.shape != (1, 28, 28):
                raise ValueError("a picture file can start a morph only for 28x28 grey datasets (MNIST, Fashion-MNIST)")
            image = mnist_style(path.read_bytes())
        settings = dict(RECIPES[args.recipe])
        overrides = dict(steps=args.steps, lr=args.lr, step_norm=args.step_norm, noise_sigma=args.noise_sigma,
                         noise_samples=args.noise_samples, loss=args.loss)
        settings.update({k: v for k, v in overrides.items() if v is not None})
        result = visualize(model, targets if len(targets) > 1 else targets[0],
                           start="image" if image is not None else args.start, image=image,
                           shape=None if image is not None else tuple(info.shape), threshold=args.threshold,
                           seed=args.seed, **settings)
    except (ValueError, KeyError, DataNotFoundError, NotADigitImage) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if out.suffix.lower() == ".gif":
        out.write_bytes(gif(result, image=None if len(targets) > 1 else 0))
    elif len(targets) > 1:
        out.write_bytes(finals_png(result))
    else:
        out.write_bytes(strip_png(result, frames=args.frames))
    for i, t in enumerate(targets):
        print(f"target {t}: p = {100 * float(result.final_probabilities[i, t]):.1f}% after "
              f"{int(result.steps_run[i])} steps ({result.stop_reason[i]})")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
