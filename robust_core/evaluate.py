"""Command line: robust accuracy of stored models under an attack, as a table and JSON.

    python -m robust_core.evaluate --model 12f53dc8 --attack pgd --eps 0.05:0.3:0.05
    python -m robust_core.evaluate --model a1b2 --model c3d4 --attack apgd_ce --eps 0.1,0.3 --n 1000 --json out.json
    python -m robust_core.evaluate --model 2a34 --attack autoattack_standard --eps 0.3 --n 1000   # per stage too
    python -m robust_core.evaluate --model-factory mypackage.nets:build --weights my_net.safetensors \
        --dataset cifar10 --attack apgd_ce --eps 0.0314   # a network the lab did not train (checked, then stored)

Accuracy at each eps is read from the per-example minimal eps (cached beside the model), so
a finer grid costs nothing more once computed; ``--direct`` runs the attack at each eps instead. AutoAttack
(``autoattack_standard``, ``autoattack_fast``) always runs at each eps, and prints its protocol and every stage.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .attacks import ATTACKS
from .cli import models_of_one_dataset, write_results
from .data import DataNotFoundError, load_dataset
from .device import get_device
from .external import ExternalModelError
from .evaluation import (
    AutoAttackKey,
    EvaluationCache,
    accuracy_at,
    cached_autoattack,
    cached_minimal_eps,
    parse_eps_grid,
    perturbation_stats,
    robust_accuracy,
)
from .store import ModelStore

DEFAULT_EPS = "0.05:0.3:0.05"


def register_external(store: ModelStore, args):
    """The --model-factory network, checked (its findings printed) and stored; ValueError/ExternalModelError saying
    what to change."""
    import json

    from .data import DATASETS

    if not args.weights or not args.dataset:
        raise ValueError("--model-factory needs --weights (its weights file) and --dataset")
    if args.dataset not in DATASETS:
        raise ValueError(f"--dataset {args.dataset!r} is not one of {sorted(DATASETS)}")
    try:
        kwargs = json.loads(args.factory_kwargs)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--factory-kwargs is not JSON: {exc}") from None
    if not isinstance(kwargs, dict):
        raise ValueError("--factory-kwargs must be a JSON object")
    entry = store.add_external_files(factory=args.model_factory, weights=args.weights, dataset=args.dataset,
                                     factory_kwargs=kwargs, name=args.name)
    checks = entry.meta["external"]["checks"]
    accuracy = checks.get("clean_accuracy")
    print(f"{entry.name}: stored as {entry.model_id} ({entry.meta['parameters']:,} parameters"
          + (f", {100 * accuracy:.1f}% of {64} test images" if accuracy is not None else "") + ")")
    for warning in checks["warnings"]:
        print(f"  note: {warning}")
    return entry


def register_robustbench(store: ModelStore, args):
    """The --robustbench network, built and fetched by RobustBench, checked and stored (its factory is
    :func:`robust_core.external.robustbench.robustbench_model`, so any process rebuilds it from RobustBench's file)."""
    from .external.robustbench import robustbench_model

    dataset = args.dataset or "cifar10"
    kwargs = {"name": args.robustbench, "dataset": dataset, "threat_model": args.threat_model,
              "model_dir": str(Path(args.robustbench_dir).resolve())}
    model = robustbench_model(**kwargs)
    entry = store.add_external(model, dataset=dataset, name=args.name or f"{args.robustbench} (RobustBench)",
                               factory="robust_core.external.robustbench:robustbench_model", factory_kwargs=kwargs,
                               origin=f"RobustBench {dataset} {args.threat_model}: {args.robustbench}")
    print(f"{entry.name}: stored as {entry.model_id} ({entry.meta['parameters']:,} parameters)")
    return entry


def say_autoattack_cost(store: ModelStore, model_id: str, x, y, attack: str) -> None:
    """Before AutoAttack starts: how long it should take here (robust_core.evaluation.estimate), on stderr."""
    from .evaluation.estimate import estimate_autoattack

    version = attack.removeprefix("autoattack_")
    model = store.load(model_id, device=x.device)
    print(f"{store.get(model_id).name}: {estimate_autoattack(model, x, y, version=version).text(len(x))}",
          file=sys.stderr)


def print_reports(store: ModelStore, ids: list[str], x, y, args) -> int:
    from .evaluation.report import format_report, robustness_report

    eps = None
    if args.eps is not None:
        grid = parse_eps_grid(args.eps)
        if len(grid) != 1:
            print("error: --report takes one --eps (AutoAttack's L∞ radius)", file=sys.stderr)
            return 2
        eps = grid[0]
    reports = {}
    for model_id in ids:
        say_autoattack_cost(store, model_id, x, y, "autoattack_standard")
        reports[model_id] = robustness_report(store, model_id, x, y, eps=eps, seed=args.seed,
                                              on_progress=lambda text: print(f"… {text}", file=sys.stderr))
        print(format_report(reports[model_id]) + "\n")
    if args.json:
        write_results(args.json, {"reports": reports})
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m robust_core.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=[], help="model id (or a unique prefix); repeat for several")
    p.add_argument("--model-factory", help="package.module:function that builds your network (its weights from "
                   "--weights); it is checked, stored, and evaluated beside any --model")
    p.add_argument("--weights", help="the weights of --model-factory: .safetensors, or .pt/.pth (read with "
                   "weights_only=True)")
    p.add_argument("--factory-kwargs", default="{}", help="keyword arguments of --model-factory, as a JSON object")
    p.add_argument("--dataset", help="the dataset of --model-factory's network (mnist, fashion_mnist, cifar10)")
    p.add_argument("--name", help="the name of --model-factory's (or --robustbench's) network in the store")
    p.add_argument("--robustbench", metavar="NAME", help="a RobustBench model by name (e.g. Carmon2019Unlabeled, with "
                   "--dataset cifar10 and --threat-model); needs the optional robustbench package")
    p.add_argument("--threat-model", default="Linf", help="RobustBench's threat model of --robustbench (Linf, L2)")
    p.add_argument("--robustbench-dir", default="models", help="RobustBench's folder for its weights (default "
                   "./models, as RobustBench's own)")
    p.add_argument("--attack", default="pgd", choices=sorted(ATTACKS))
    p.add_argument("--eps", default=None, help=f"start:stop:step or a comma list, in the attack's norm (default "
                   f"{DEFAULT_EPS}; with --report, one value: AutoAttack's L∞ ε)")
    p.add_argument("--n", type=int, default=1000, help="first N test images (100 to 10,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--direct", action="store_true", help="attack at each eps instead of using minimal eps")
    p.add_argument("--report", action="store_true", help="a robustness report instead of one attack's curve: "
                   "AutoAttack at the dataset's usual L∞ ε (or --eps, one value), the attack comparison's "
                   "gradient-masking warnings and the best-of minimal L2 perturbations")
    p.add_argument("--json", default=None, help="write the results to this file")
    p.add_argument("--store", default=None)
    args = p.parse_args(argv)
    try:
        eps_grid = parse_eps_grid(DEFAULT_EPS if args.eps is None else args.eps)
        if not 1 <= args.n <= 10000:
            raise ValueError("--n must be between 1 and 10,000")
        store = ModelStore(args.store)
        models = list(args.model)
        if args.model_factory:
            models.append(register_external(store, args).model_id)
        if args.robustbench:
            models.append(register_robustbench(store, args).model_id)
        if not models:
            raise ValueError("give --model (a stored model's id), --model-factory with --weights and --dataset, or "
                             "--robustbench with --dataset")
        ids, dataset = models_of_one_dataset(store, models)
        data = load_dataset(dataset)
    except (ValueError, KeyError, DataNotFoundError, ExternalModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device = get_device()  # CUDA when present ($ROBUST_DEVICE overrides): AutoAttack on a WRN-28-10 is GPU work
    x, y = data.test_x[: args.n].to(device), data.test_y[: args.n].to(device)
    if args.report:
        return print_reports(store, ids, x, y, args)
    cache = EvaluationCache(store)
    spec = ATTACKS[args.attack]
    results = {"attack": args.attack, "norm": spec.norm, "n": args.n, "seed": args.seed, "eps": eps_grid, "models": {}}
    for model_id in ids:
        entry = store.get(model_id)
        if spec.kind == "ensemble":
            say_autoattack_cost(store, model_id, x, y, args.attack)
            # Through the AutoAttack cache the Attack page and the sweep use (ε = 0: the clean accuracy).
            runs = [cached_autoattack(store, AutoAttackKey(model_id, args.attack, float(e), args.n, args.seed), x, y)
                    for e in eps_grid]
            acc = [r["robust_accuracy"] for r in runs]
            for r in runs:
                print(f"{entry.name}: {r['protocol']}")
                for stage in r["stages"]:
                    print(f"  {stage['attack']:8s} attacked {stage['attacked']:5d} broke {stage['broken']:5d} -> "
                          f"robust {100 * stage['robust_accuracy']:5.1f}% ({stage['seconds']:.1f} s)")
            results["models"][model_id] = {"name": entry.name, "accuracy": acc, "minimal_perturbation": None,
                                           "protocol": [r["protocol"] for r in runs],
                                           "stages": [r["stages"] for r in runs]}
            continue
        if args.direct:
            acc = robust_accuracy(store.load(model_id, device=device), x, y, attack=args.attack, eps_grid=eps_grid,
                                  seed=args.seed)
            stats = None
        else:
            min_eps = cached_minimal_eps(store, cache, model_id, x, y, attack=args.attack, seed=args.seed,
                                         eps_max=max(max(eps_grid), 1e-6) if spec.kind != "minimal" else None)
            acc = accuracy_at(min_eps, eps_grid).tolist()
            stats = perturbation_stats(min_eps)
        results["models"][model_id] = {"name": entry.name, "accuracy": acc, "minimal_perturbation": stats}
    width = max(len(r["name"]) for r in results["models"].values())
    print(f"{spec.title}, {spec.norm.upper()}, first {args.n} test images, seed {args.seed}")
    print(f"{'model':{width}s} " + " ".join(f"{e:>7g}" for e in eps_grid))
    for r in results["models"].values():
        print(f"{r['name']:{width}s} " + " ".join(f"{100 * a:6.1f}%" for a in r["accuracy"]))
    if args.json:
        write_results(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
