"""``python -m robust_core.sweep``: the command line."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..attacks import ATTACKS
from ..data import DataNotFoundError
from ..evaluation import parse_eps_grid
from ..store import ModelStore
from ..training.flags import add_training_arguments, config_fields_from_arguments, parse_json_object
from .backends import import_ray
from .grids import N_MAX, EvalGrid, SweepError, TrainGrid
from .outputs import print_table, write_outputs
from .run import run_sweep

EVALUATE_EXAMPLES = """\
examples:
  # PGD-40 at two ε on the first 100 test images of two shipped CNNs (ids or unique prefixes): read from the results
  # shipped with them (first 1,000 images), no attack runs
  python -m robust_core.sweep --models b2b7,2a34 --attacks pgd --eps 0.1,0.3 --n 100 --out sweep/

  # every shipped MNIST model, PGD and FGSM on an ε grid (start:stop:step)
  python -m robust_core.sweep --models shipped --dataset mnist --attacks pgd,fgsm --eps 0:0.3:0.05 --n 1000

  # AutoAttack (the standard chain) at fixed ε; a cheaper PGD-10
  python -m robust_core.sweep --models 2a34 --attacks autoattack_standard --eps 0.3 --n 1000 --out aa/
  python -m robust_core.sweep --models 2a34 --attacks pgd --attack-params '{"pgd": {"steps": 10}}' --eps 0.1,0.2

  # on a Ray cluster whose nodes share the store's folder
  RAY_ADDRESS=<head>:6379 python -m robust_core.sweep --models shipped --attacks pgd --store /shared/store

Finished jobs are cached in the store: the same command again reuses them (and resumes an interrupted sweep).
Outputs in --out: results.csv, results.json, and figures as HTML with plotly.min.js beside them (open offline).
"""
# The fields of a training configuration that a training grid varies (comma lists of its own flags).
GRID_FIELDS = ("method", "seed")
TRAIN_EXAMPLES = """\
examples:
  # GFA at two λ and two seeds, one epoch on 2,000 training images
  python -m robust_core.sweep train --method gfa --lam 0.1,1 --seed 0,1 --epochs 1 --n-train 2000 --out gfa/

  # PGD adversarial training at two ε, each model then evaluated under PGD
  python -m robust_core.sweep train --method pgd_at --eps 0.1,0.3 --attacks pgd --eval-eps 0.1,0.3 --n 500 --out at/

Configurations already in the store are not trained again.
"""


def _split(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _numbers(text: str, flag: str, kind=float) -> list:
    try:
        return [kind(t) for t in _split(text)]
    except ValueError:
        raise SweepError(f"{flag} must be a comma list of numbers, not {text!r}") from None


def _json_object(text: str, flag: str) -> dict:
    try:
        return parse_json_object(text, flag)
    except ValueError as exc:
        raise SweepError(str(exc)) from None


def _common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="sweep-results", help="folder for results.csv, results.json and the figures")
    p.add_argument("--store", default=None, help="store folder (default: $ROBUST_STORE_DIR or the user cache); on a "
                                                 "Ray cluster, a folder every node shares")
    p.add_argument("--ray", action="store_true",
                   help="run the jobs as Ray tasks ($RAY_ADDRESS, or Ray on this machine)")
    p.add_argument("--ray-address", default=None, help="a Ray cluster's address (implies --ray)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per job (Ray: the CPUs each task declares, default 1)")
    p.add_argument("--no-gpu", action="store_true", help="on Ray, do not ask for GPUs even where the cluster has some")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser(mode: str) -> argparse.ArgumentParser:
    if mode == "train":
        p = argparse.ArgumentParser(prog="python -m robust_core.sweep train",
                                    description="Train a grid of configurations into the store (skipping those already "
                                                "there), optionally evaluate them.",
                                    epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--method", default="standard", help="training methods, comma list (e.g. gfa,pgd_at)")
        p.add_argument("--lam", default="", help="λ values, comma list (methods with a λ: gfa, gnr)")
        p.add_argument("--eps", default="", help="training ε values, comma list (adversarial methods)")
        p.add_argument("--seed", default="0", help="seeds, comma list")
        # The other fields of the configuration, as python -m robust_core.train takes them; each one given applies to
        # every configuration of the grid.
        add_training_arguments(p, exclude=GRID_FIELDS, defaults=("dataset", "arch", "arch_kwargs", "method_kwargs"),
                               help_overrides={"method_kwargs": "JSON object of further method arguments, for every "
                                                                "method that takes them"})
        p.add_argument("--attacks", default="", help="evaluate every trained model under these attacks (comma list)")
        p.add_argument("--eval-eps", default="", help="ε grid of that evaluation (start:stop:step or a comma list)")
        p.add_argument("--n", type=int, default=1000, help="test images of that evaluation")
        p.add_argument("--attack-seed", type=int, default=0)
        p.add_argument("--attack-params", default="{}",
                       help='JSON: per attack, its parameters ({"pgd": {"steps": 10}})')
    else:
        p = argparse.ArgumentParser(prog="python -m robust_core.sweep",
                                    description="Evaluate models × attacks × ε on the first n test images; "
                                                "`python -m robust_core.sweep train --help` for a training grid.",
                                    epilog=EVALUATE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--models", action="append", required=True,
                       help="store ids or unique prefixes, comma list or repeated; 'shipped': every shipped model "
                            "installed in the store")
        p.add_argument("--dataset", default=None, help="only the models of this dataset (with 'shipped')")
        p.add_argument("--attacks", default="pgd", help="comma list: " + ", ".join(sorted(ATTACKS)))
        p.add_argument("--eps", default="0:0.3:0.05", help="start:stop:step or a comma list, in each attack's norm")
        p.add_argument("--n", type=int, default=1000, help=f"first N test images (1 to {N_MAX:,})")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--attack-params", default="{}",
                       help='JSON: per attack, its parameters ({"pgd": {"steps": 10}})')
    _common_arguments(p)
    return p


def grid_from_args(mode: str, args: argparse.Namespace) -> EvalGrid | TrainGrid:
    try:
        attack_params = _json_object(args.attack_params, "--attack-params")
        if mode == "train":
            base: dict[str, Any] = config_fields_from_arguments(args, exclude=GRID_FIELDS)
            method_kwargs = base.pop("method_kwargs")  # per method, only the arguments it takes
            return TrainGrid(methods=_split(args.method), lam=_numbers(args.lam, "--lam"),
                             eps=_numbers(args.eps, "--eps"), seeds=_numbers(args.seed, "--seed", int), base=base,
                             method_kwargs=method_kwargs,
                             attacks=_split(args.attacks),
                             eval_eps=parse_eps_grid(args.eval_eps) if args.eval_eps else [], n=args.n,
                             eval_seed=args.attack_seed, attack_params=attack_params)
        models = [m for text in args.models for m in _split(text)]
        return EvalGrid(models=models, attacks=_split(args.attacks), eps=parse_eps_grid(args.eps), n=args.n,
                        seed=args.seed, attack_params=attack_params, dataset=args.dataset)
    except ValueError as exc:
        raise SweepError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    mode = "evaluate"
    if argv and argv[0] in ("train", "evaluate"):
        mode, argv = argv[0], argv[1:]
    args = build_parser(mode).parse_args(argv)
    backend = "ray" if (args.ray or args.ray_address or os.environ.get("RAY_ADDRESS")) else "local"
    try:
        grid = grid_from_args(mode, args)
        if args.threads is not None and args.threads < 1:
            raise SweepError("--threads must be at least 1")
        store = ModelStore(args.store)
        if backend == "ray":
            import_ray()
        result = run_sweep(grid, store=store, backend=backend, progress=not args.quiet, threads=args.threads,
                           ray_address=args.ray_address, gpus=False if args.no_gpu else "auto")
    except (SweepError, KeyError, DataNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the jobs that finished are cached; run the same command again to resume.",
              file=sys.stderr)
        return 130
    print_table(result)
    written = write_outputs(result, args.out, store)
    print(result.summary())
    print(f"written to {Path(args.out)}: " + ", ".join(p.name for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
