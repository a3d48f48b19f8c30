"""Best-of minimal perturbations: per image, the smallest adversarial perturbation any minimum-norm attack found.

    python -m robust_core.minimal_norm --model 2a34 --norm l2 --n 200 --correct-only
    python -m robust_core.minimal_norm --model b2b7 --model 2a34 --norm l1 --n 500 --json l1.json

Every minimum-norm attack (FAB, DeepFool, C&W, EAD) returns *an* adversarial example, so the norm of
its perturbation is an upper bound on the image's true minimal adversarial distance; how loose the
bound is depends on the attack and on the model (on adversarially trained networks DeepFool and C&W
land far above FAB). The smallest bound over several attacks is the tightest one we have, which is
why robustness is reported as the best-of, per image, with each attack's own success and median
beside it. Units: the image's pixel scale, [0, 1] per pixel (an L2 of 1.5 on MNIST is, for
example, 1.5 = ||x' - x||_2 over 784 pixels in [0, 1]).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from .attacks import ATTACKS, NORMS, fab, flat_norm
from .tensors import eval_mode, predict

BATCH_SIZE = 500

# Best-of on L1 wants EAD's L1 decision rule (the successful point with the smallest L1 norm, not the smallest
# elastic-net cost); per-attack keyword arguments given by the caller override these.
DEFAULT_KWARGS: dict[str, dict] = {"ead": {"decision": "l1"}}


def minimal_attacks(norm: str) -> list[str]:
    """The registry's untargeted minimum-norm attacks of ``norm``, FAB first (registry order otherwise)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {norm!r}")
    names = [name for name, spec in ATTACKS.items() if spec.kind == "minimal" and spec.norm == norm]
    return sorted(names, key=lambda name: ATTACKS[name].fn is not fab)


@dataclass
class MinimalNormResult:
    """What :func:`best_minimal_perturbation` found, per image (tensors on the CPU, detached).

    ``norms``: the best-of perturbation norm per image (pixel scale 0-1): 0 where the model is wrong
    without attack, ``inf`` where no attack produced a verified adversarial example.
    ``found_by``: per image the attack whose example that is ("clean" for 0, "" for inf).
    ``x_adv``: that example (the clean image where none).
    ``per_attack``: each attack's own verified norm per image, same conventions.
    ``seconds``: each attack's wall time.
    """

    norm: str
    attacks: tuple[str, ...]
    norms: torch.Tensor
    found_by: list[str]
    x_adv: torch.Tensor
    clean_correct: torch.Tensor
    per_attack: dict[str, torch.Tensor]
    seconds: dict[str, float]
    attack_kwargs: dict[str, dict] = field(default_factory=dict)

    def summary(self) -> dict:
        """Success rate and median norm over successes, for the best-of and for each attack, on the images
        the model classifies correctly (the misclassified ones need no attack and would only pull medians to 0).
        JSON-ready; a median is None where nothing was broken."""
        attacked = self.clean_correct

        def stats(values: torch.Tensor) -> dict:
            v = values[attacked]
            broken = v[torch.isfinite(v)]
            out = {"success": float(len(broken) / len(v)) if len(v) else float("nan"),
                   "median": float(broken.median()) if len(broken) else None}
            if len(broken):
                q = torch.quantile(broken.double(), torch.tensor([0.25, 0.75], dtype=torch.float64))
                out["q25"], out["q75"] = float(q[0]), float(q[1])
            return out

        best_counts = {a: sum(1 for f in self.found_by if f == a) for a in self.attacks}
        return {
            "norm": self.norm,
            "n": len(self.norms),
            "attacked": int(attacked.sum()),
            "clean_accuracy": float(attacked.float().mean()) if len(attacked) else float("nan"),
            "best_of": stats(self.norms),
            "attacks": {a: {**stats(self.per_attack[a]), "seconds": self.seconds[a], "best_for": best_counts[a],
                            "kwargs": self.attack_kwargs.get(a, {})} for a in self.attacks},
        }


def best_minimal_perturbation(model, x: torch.Tensor, y: torch.Tensor, *, norm: str = "l2",
                              attacks: Sequence[str] | None = None, attack_kwargs: Mapping[str, dict] | None = None,
                              seed: int = 0, batch_size: int = BATCH_SIZE,
                              on_progress: Callable[[str, int, int], None] | None = None) -> MinimalNormResult:
    """Per image, the smallest perturbation (in ``norm``, pixel scale 0-1) that any minimum-norm attack found.

    Runs every attack in ``attacks`` (default: all of the registry's minimum-norm attacks of that norm,
    :func:`minimal_attacks`: L2 FAB-L2, DeepFool, C&W; L1 FAB-L1, EAD; L-inf FAB, DeepFool-L-inf) on
    the images the model classifies correctly, in batches of ``batch_size``, each with ``seed``.
    Nothing an attack returns is trusted: a candidate counts only if a forward pass classifies it as
    another class than ``y`` and it lies in [0, 1]; its norm is measured here, from x_adv - x. Each
    attack's verified norm is an upper bound on the true minimal distance, so the smallest over the
    attacks is the tightest bound: ties go to the earlier attack in ``attacks``.

    Args:
        norm: "l2" (default), "l1" or "linf".
        attacks: registry names; each must be a minimum-norm attack of ``norm``.
        attack_kwargs: per attack, keyword arguments for it (e.g. ``{"fab_l2": {"n_iter": 200}}``);
            EAD runs with ``decision="l1"`` unless told otherwise.
        on_progress: called as ``on_progress(attack, images_done, images_total)`` after each batch.

    Images misclassified without attack get 0 (found_by "clean"); images no attack broke get ``inf``.
    The model runs in eval mode and is given back in the mode it came in.

    Example:
        >>> r = best_minimal_perturbation(model, x, y, norm="l2")
        >>> r.norms.median(), r.summary()["attacks"]["deepfool"]["success"]
    """
    names = minimal_attacks(norm) if attacks is None else list(attacks)
    if not names:
        raise ValueError("attacks must name at least one attack")
    for name in names:
        if name not in ATTACKS:
            raise ValueError(f"unknown attack {name!r}; the minimum-norm attacks of {norm} are {minimal_attacks(norm)}")
        spec = ATTACKS[name]
        if spec.kind != "minimal" or spec.norm != norm:
            raise ValueError(f"{name!r} is not a minimum-norm {norm} attack; choose from {minimal_attacks(norm)}")
    if len(set(names)) != len(names):
        raise ValueError(f"attacks are listed twice: {names}")
    extra = set(attack_kwargs or {}) - set(names)
    if extra:
        raise ValueError(f"attack_kwargs names attacks that are not run: {sorted(extra)}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, not {batch_size!r}")
    kwargs = {name: {**DEFAULT_KWARGS.get(name, {}), **dict((attack_kwargs or {}).get(name, {}))} for name in names}
    for name, kw in kwargs.items():
        for reserved in ("eps", "targeted", "target", "seed"):
            if reserved in kw:
                raise ValueError(f"attack_kwargs[{name!r}] may not set {reserved!r}: best-of is untargeted and "
                                 "unbudgeted")

    x, y = x.detach(), y.detach()
    n = len(x)
    inf = torch.tensor(math.inf, device=x.device)
    with eval_mode(model):
        clean_correct = (predict(model, x, batch_size) == y if n
                         else torch.zeros(0, dtype=torch.bool, device=x.device))
        todo = clean_correct.nonzero().flatten()
        best = (torch.where(clean_correct, inf, torch.zeros((), device=x.device)) if n
                else torch.zeros(0, device=x.device))
        best_adv = x.clone()
        found_by = ["" if ok else "clean" for ok in clean_correct.tolist()]
        per_attack: dict[str, torch.Tensor] = {}
        seconds: dict[str, float] = {}
        for name in names:
            spec = ATTACKS[name]
            values = best.new_zeros(n)
            values[todo] = math.inf
            start = time.perf_counter()
            for i in range(0, len(todo), batch_size):
                idx = todo[i : i + batch_size]
                xb, yb = x[idx], y[idx]
                x_adv = spec(model, xb, yb, seed=seed, **kwargs[name]).detach()
                # Verify: a forward pass of our own, the box, a finite image; the norm measured from the difference.
                flat = x_adv.flatten(1)
                valid = torch.isfinite(flat).all(1) & (flat.amin(1) >= 0) & (flat.amax(1) <= 1)
                fooled = (predict(model, x_adv, batch_size) != yb) & valid
                dist = flat_norm(x_adv - xb, norm)
                values[idx] = torch.where(fooled, dist, inf)
                better = fooled & (dist < best[idx])
                best[idx[better]] = dist[better]
                best_adv[idx[better]] = x_adv[better]
                for j in idx[better].tolist():
                    found_by[j] = name
                if on_progress is not None:
                    on_progress(name, min(i + batch_size, len(todo)), len(todo))
            seconds[name] = time.perf_counter() - start
            per_attack[name] = values.detach().cpu()
    return MinimalNormResult(norm=norm, attacks=tuple(names), norms=best.detach().cpu(), found_by=found_by,
                             x_adv=best_adv.detach().cpu(), clean_correct=clean_correct.detach().cpu(),
                             per_attack=per_attack, seconds=seconds, attack_kwargs=kwargs)


def _format(summary: dict) -> list[str]:
    def cell(s):
        median = "-" if s["median"] is None else f"{s['median']:.3f}"
        return f"{100 * s['success']:6.1f}%  {median:>7s}"

    lines = [f"  {'attack':10s} {'success':>7s}  {'median':>7s}  {'seconds':>7s}  best for"]
    for name, s in summary["attacks"].items():
        lines.append(f"  {name:10s} {cell(s)}  {s['seconds']:7.1f}  {s['best_for']:5d}")
    seconds = sum(s["seconds"] for s in summary["attacks"].values())
    lines.append(f"  {'best-of':10s} {cell(summary['best_of'])}  {seconds:7.1f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    from .cli import models_of_one_dataset, write_results
    from .data import DataNotFoundError, load_dataset
    from .device import get_device
    from .store import ModelStore

    p = argparse.ArgumentParser(prog="python -m robust_core.minimal_norm", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="model id (or a unique prefix); repeat for several")
    p.add_argument("--norm", default="l2", choices=NORMS)
    p.add_argument("--attack", action="append", default=None,
                   help="a minimum-norm attack of the norm; repeat for several (default: all of them)")
    p.add_argument("--n", type=int, default=200, help="first N test images (1 to 10,000)")
    p.add_argument("--correct-only", action="store_true",
                   help="the first N test images each model classifies correctly, instead of the first N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results to this file")
    p.add_argument("--store", default=None)
    args = p.parse_args(argv)
    try:
        if not 1 <= args.n <= 10000:
            raise ValueError("--n must be between 1 and 10,000")
        names = minimal_attacks(args.norm) if args.attack is None else args.attack
        for name in names:
            spec = ATTACKS.get(name)
            if spec is None or spec.kind != "minimal" or spec.norm != args.norm:
                raise ValueError(f"{name!r} is not a minimum-norm {args.norm} attack; "
                                 f"choose from {minimal_attacks(args.norm)}")
        store = ModelStore(args.store)
        ids, dataset = models_of_one_dataset(store, args.model)
        data = load_dataset(dataset)
        device = get_device()
    except (ValueError, KeyError, RuntimeError, DataNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = {"norm": args.norm, "attacks": names, "n": args.n, "correct_only": args.correct_only, "seed": args.seed,
               "units": "pixel scale [0, 1]", "threads": torch.get_num_threads(), "device": str(device), "models": {}}
    for model_id in ids:
        entry = store.get(model_id)
        model = store.load(model_id, device=device)
        if not isinstance(model, torch.nn.Module):
            print(f"error: {entry.name} ({model_id}) is not a network: minimum-norm attacks need gradients",
                  file=sys.stderr)
            return 2
        if args.correct_only:
            pred = torch.cat([predict(model, data.test_x[i : i + 1000].to(device)).cpu()
                              for i in range(0, len(data.test_x), 1000)])
            index = (pred == data.test_y).nonzero().flatten()[: args.n]
        else:
            index = torch.arange(min(args.n, len(data.test_x)))
        x, y = data.test_x[index].to(device), data.test_y[index].to(device)
        what = f"first {len(index)} correctly classified" if args.correct_only else f"first {len(index)}"
        print(f"{entry.name} ({model_id}): {args.norm.upper()}, {what} test images, seed {args.seed}", flush=True)
        result = best_minimal_perturbation(model, x, y, norm=args.norm, attacks=names, seed=args.seed)
        summary = result.summary()
        print(f"  {summary['attacked']} attacked "
              f"({summary['n'] - summary['attacked']} misclassified without attack: 0)")
        print("\n".join(_format(summary)), flush=True)
        results["models"][model_id] = {"name": entry.name, "images": index.tolist(), **summary,
                                       "best_of_norms": [v if math.isfinite(v) else "inf"
                                                         for v in result.norms.tolist()],
                                       "found_by": result.found_by}
    if args.json:
        write_results(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
