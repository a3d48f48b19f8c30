"""One model's robustness report, as a researcher asks for it about a defence: AutoAttack at the field's ε, the
attack comparison with its gradient-masking warnings, and the smallest L2 perturbations any minimum-norm attack finds.

    from robust_core.evaluation.report import robustness_report, format_report
    report = robustness_report(store, model_id, x, y)            # through the caches the pages and the sweep use
    print(format_report(report))

    from robust_core.evaluation.report import report_for_module
    print(format_report(report_for_module(my_net, dataset="cifar10", n=500)))   # any nn.Module: checked, stored

``python -m robust_core.evaluate --report`` prints the same text.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..attacks import get_attack
from ..masking import attack_comparison_notes, attack_comparison_warnings, training_method_of
from ..minimal_norm import best_minimal_perturbation, minimal_attacks
from .cache import AutoAttackKey, EvaluationCache, cached_autoattack, cached_minimal_eps
from .params import comparison_params, measured_eps_grid
from .sanity import model_sanity_warnings
from .search import accuracy_at

# The attack comparison of the Attack page (its default attacks and parameters, hence its cache entries).
REPORT_ATTACKS = ("fgsm", "pgd", "apgd_ce", "square")
# The L∞ radius each dataset's robustness is reported at in the literature: Madry et al. 2018 (MNIST 0.3, CIFAR-10
# 8/255); Fashion-MNIST's 0.1 as in most of its adversarial-training papers.
FIELD_EPS = {"mnist": 0.3, "fashion_mnist": 0.1, "cifar10": 8 / 255}


def robustness_report(store, model_id: str, x: torch.Tensor, y: torch.Tensor, *, eps: float | None = None,
                      seed: int = 0, autoattack: str = "autoattack_standard",
                      on_progress: Callable[[str], None] | None = None) -> dict:
    """The report of stored model ``model_id`` on (x, y), the first len(x) test images of its dataset: JSON-ready.
    ``eps``: AutoAttack's L∞ radius (default :data:`FIELD_EPS` of the dataset). Every part is computed through the
    store's caches, so a second report, the Attack page and the sweep reuse what the first computed."""
    entry = store.get(model_id)
    dataset = entry.meta["config"]["dataset"]
    eps = float(FIELD_EPS.get(dataset, 0.1) if eps is None else eps)
    say = on_progress or (lambda text: None)
    model = store.load(model_id, device=x.device)
    cache = EvaluationCache(store)
    params = {a: comparison_params(a, dataset) for a in REPORT_ATTACKS}
    # The grid every attack is measured on: the coarse search's (Square's), as the Attack page compares them.
    grid = measured_eps_grid(params["square"], [])
    accuracy = {}
    for attack in REPORT_ATTACKS:
        say(f"comparison: {get_attack(attack).title}")
        min_eps = cached_minimal_eps(store, cache, model_id, x, y, attack=attack, seed=seed, **params[attack])
        accuracy[attack] = [float(a) for a in accuracy_at(min_eps, grid)]
    method = training_method_of(entry.meta)
    warnings = (model_sanity_warnings(model, x, y)
                + attack_comparison_warnings(accuracy, grid, training_method=method))
    say(f"AutoAttack at ε = {eps:g}")
    autoattack_result = cached_autoattack(store, AutoAttackKey(model_id, autoattack, eps, len(x), seed), x, y)
    say("minimal L2 perturbations")
    minimal = best_minimal_perturbation(model, x, y, norm="l2", seed=seed).summary()
    external = entry.meta.get("external")
    return {
        "model_id": model_id, "name": entry.name, "dataset": dataset, "n": len(x), "seed": seed,
        "origin": (external or {}).get("origin"), "import_checks": (external or {}).get("checks"),
        "autoattack": {"attack": autoattack, "eps": eps, **{k: autoattack_result[k] for k in
                                                            ("protocol", "clean_accuracy", "robust_accuracy", "stages")
                                                            if k in autoattack_result}},
        "comparison": {"eps": [float(e) for e in grid], "accuracy": accuracy, "warnings": warnings,
                       "notes": attack_comparison_notes(accuracy, grid)},
        "minimal_l2": {"attacks": minimal_attacks("l2"), **minimal},
    }


def format_report(report: dict) -> str:
    """The report as the CLI prints it."""
    lines = [f"Robustness report: {report['name']} ({report['dataset']}, id {report['model_id']}), first "
             f"{report['n']} test images, seed {report['seed']}"]
    if report.get("origin"):
        lines.append(f"Not trained by the lab: {report['origin']}")
    for note in (report.get("import_checks") or {}).get("warnings", []):
        lines.append(f"  import check: {note}")
    aa = report["autoattack"]
    lines += ["", f"AutoAttack ({aa['attack']}), L∞ ε = {aa['eps']:.4g}: robust accuracy "
                  f"{100 * aa['robust_accuracy']:.1f}% (clean {100 * aa.get('clean_accuracy', float('nan')):.1f}%)",
              f"  {aa.get('protocol', '')}"]
    for stage in aa.get("stages", []):
        lines.append(f"  {stage['attack']:8s} attacked {stage['attacked']:5d} broke {stage['broken']:5d} -> robust "
                     f"{100 * stage['robust_accuracy']:5.1f}%")
    comparison = report["comparison"]
    lines += ["", "Attack comparison (L∞, accuracy at each ε):",
              f"  {'attack':10s} " + " ".join(f"{e:>6g}" for e in comparison["eps"])]
    for attack, values in comparison["accuracy"].items():
        lines.append(f"  {attack:10s} " + " ".join(f"{100 * v:5.1f}%" for v in values))
    lines += [f"  WARNING: {w}" for w in comparison["warnings"]] or ["  No gradient-masking warning."]
    lines += [f"  note: {n}" for n in comparison["notes"]]
    minimal = report["minimal_l2"]
    best = minimal["best_of"]
    lines += ["", f"Smallest L2 perturbation, best of {', '.join(minimal['attacks'])} ({minimal['attacked']} images "
                  "classified correctly):"]
    if best["median"] is None:
        lines.append(f"  no attack broke any image (success {100 * best['success']:.0f}%)")
    else:
        lines.append(f"  median {best['median']:.3f} (quartiles {best['q25']:.3f}–{best['q75']:.3f}), "
                     f"{100 * best['success']:.0f}% of the images broken")
    for attack, stats in minimal["attacks"].items():
        median = "—" if stats["median"] is None else f"{stats['median']:.3f}"
        lines.append(f"  {attack:9s} median {median}, success {100 * stats['success']:.0f}%, best for "
                     f"{stats['best_for']} images")
    return "\n".join(lines)


def report_for_module(model: torch.nn.Module, *, dataset: str, n: int = 1000, eps: float | None = None, seed: int = 0,
                      store=None, name: str | None = None, factory: str | None = None,
                      factory_kwargs: dict | None = None) -> dict:
    """:func:`robustness_report` for any ``nn.Module``: checked and added to ``store`` (default: the user's store,
    :meth:`robust_core.store.ModelStore.add_external`), then reported on the first ``n`` test images of ``dataset``."""
    from ..data import load_dataset
    from ..store import ModelStore

    store = ModelStore() if store is None else store
    entry = store.add_external(model, dataset=dataset, name=name, factory=factory, factory_kwargs=factory_kwargs)
    data = load_dataset(dataset)
    return robustness_report(store, entry.model_id, data.test_x[:n], data.test_y[:n], eps=eps, seed=seed)
