"""Reproduction report: does Gradient-Feature Alignment (DeepDefense) make our models robust?

    python benchmarks/deepdefense_report.py [--n 1000] [--only ID ...] [--out reports/deepdefense.md]

Evaluates every shipped model (assets/models) on the same first N test images of its dataset:
clean accuracy; accuracy under FGSM, PGD-40, APGD-CE (100 steps), APGD-T (100 steps, 3 target
classes, run on the points APGD-CE did not break, as AutoAttack chains them), Square (1,000
queries, no gradients) and PGD-40 transfer from the standard model of the dataset (crafted there,
every step, replayed on the model), at eps in {0.05, 0.1, 0.2, 0.3} for MNIST and {0.05, 0.1, 0.2}
for Fashion-MNIST, plus the per-example worst case over all of them; and the median minimal
DeepFool L2 and EAD L1 perturbations (over the correctly classified images).

Each model's results are cached in benchmarks/out/deepdefense/<model id>-<n>.json, so the report
can be regenerated, or completed as new models are shipped, without re-running the attacks.
The report (markdown) states the command, the date and the machine, then answers the paper's claims
with the numbers measured here, whatever they are.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from robust_core.attacks import ATTACKS, flat_norm  # noqa: E402
from robust_core.attacks._common import predict  # noqa: E402
from robust_core.data import load_dataset  # noqa: E402
from robust_core.device import channels_last_copy, describe_device, get_device  # noqa: E402
from robust_core.evaluation import MASKING_EXPLANATION, MASKING_SECTION  # noqa: E402
from robust_core.shipped import install_shipped  # noqa: E402
from robust_core.store import ModelStore  # noqa: E402

EPS = {"mnist": [0.05, 0.1, 0.2, 0.3], "fashion_mnist": [0.05, 0.1, 0.2]}
ATTACK_COLUMNS = ["FGSM", "PGD-40", "APGD-CE", "APGD-CE+T", "Square", "Transfer", "Worst"]
MINIMAL_IMAGES = 500  # at most: DeepFool and EAD on the first min(N, 500) images; EAD (5 x 100 steps) is the slowest attack
CACHE = REPO / "benchmarks" / "out" / "deepdefense"
PRIORITY = ["standard", "gfa", "pgd_at", "fgsm_at", "trades", "gnr"]


def broken(model, x_adv, y):
    return predict(model, x_adv) != y


def evaluate_model(model, x, y, *, eps_grid, source=None, transfer_cache=None, partial=None, log=print) -> dict:
    """All robust accuracies and minimal-perturbation medians for one model on (x, y).

    transfer_cache: {eps: PGD points crafted on ``source``}, shared by the models of one dataset (the
    points depend on the source, the images and the seed only). partial: a JSON file that receives the
    result after every eps and from which an interrupted evaluation resumes (a 1,000-image run of one
    robust model takes tens of minutes on 2 CPU cores).
    """
    model.eval()
    clean_ok = predict(model, x) == y
    result = {"clean": float(clean_ok.float().mean()), "eps": {}, "seconds": {}}
    if partial is not None and partial.is_file():
        result = json.loads(partial.read_text())
        log(f"    resumed from {partial.name}: eps {', '.join(result['eps'])} already done")
    for eps in eps_grid:
        if str(eps) in result["eps"]:
            continue
        fooled = {}
        t0 = time.perf_counter()
        fooled["FGSM"] = broken(model, ATTACKS["fgsm"](model, x, y, eps=eps), y)
        fooled["PGD-40"] = broken(model, ATTACKS["pgd"](model, x, y, eps=eps, steps=40), y)
        fooled["APGD-CE"] = broken(model, ATTACKS["apgd_ce"](model, x, y, eps=eps, steps=100), y)
        survivors = (~fooled["APGD-CE"] & clean_ok).nonzero().flatten()
        chained = fooled["APGD-CE"].clone()
        if len(survivors):
            x_t = ATTACKS["apgd_t"](model, x[survivors], y[survivors], eps=eps, steps=100, n_target_classes=3)
            chained[survivors] = broken(model, x_t, y[survivors])
        fooled["APGD-CE+T"] = chained
        fooled["Square"] = broken(model, ATTACKS["square"](model, x, y, eps=eps, n_queries=1000), y)
        if source is not None:
            cache = transfer_cache if transfer_cache is not None else {}
            if eps not in cache:
                cache[eps] = ATTACKS["pgd"](source, x, y, eps=eps, steps=40, stop_on_success=False)
            fooled["Transfer"] = broken(model, cache[eps], y)
        worst = ~clean_ok
        for f in fooled.values():
            worst = worst | f
        fooled["Worst"] = worst
        result["eps"][str(eps)] = {k: float((~(f | ~clean_ok)).float().mean()) for k, f in fooled.items()}
        result["seconds"][str(eps)] = time.perf_counter() - t0
        log(f"    eps={eps}: " + "  ".join(f"{k} {100 * v:.1f}" for k, v in result["eps"][str(eps)].items())
            + f"  ({result['seconds'][str(eps)]:.0f} s)")
        if partial is not None:
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(result, indent=1))
    xm, ym = x[:MINIMAL_IMAGES], y[:MINIMAL_IMAGES]  # x holds N images: min(N, 500) of them
    ok = predict(model, xm) == ym
    t0 = time.perf_counter()
    for name, key, norm in (("deepfool", "deepfool_l2_median", "l2"), ("ead", "ead_l1_median", "l1")):
        x_adv = ATTACKS[name](model, xm[ok], ym[ok])
        success = broken(model, x_adv, ym[ok])
        norms = flat_norm(x_adv - xm[ok], norm)
        # Failed attacks count as infinitely large perturbations: the median stays honest.
        norms[~success] = float("inf")
        result[key] = float(norms.median()) if len(norms) else float("nan")
        result[key.replace("median", "success")] = float(success.float().mean())
    result["seconds"]["minimal"] = time.perf_counter() - t0
    log(f"    DeepFool L2 median {result['deepfool_l2_median']:.3f}, EAD L1 median {result['ead_l1_median']:.2f}"
        f" ({result['seconds']['minimal']:.0f} s)")
    return result


def describe(meta: dict) -> str:
    c = meta["config"]
    kw = c["method_kwargs"]
    details = ", ".join(f"{k}={v}" for k, v in kw.items() if v is not None) if kw else ""
    return f"{c['method']}" + (f" ({details})" if details else "")


def fmt(v):
    return "—" if v is None else f"{100 * v:.1f}"


def write_report(rows: dict, metas: dict, args, out: Path) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# DeepDefense (Gradient-Feature Alignment) reproduction on MNIST and Fashion-MNIST",
        "",
        f"Generated {now} by `python benchmarks/deepdefense_report.py --n {args.n}` on {describe_device(get_device())}, "
        f"{platform.machine()}, torch {torch.__version__}. Every number below was measured by that command on the first "
        f"N test images of each dataset, N = {args.n} unless the *images* column says otherwise (a model evaluated in "
        f"an earlier run of this command with another N); DeepFool and EAD use the correctly classified ones among the "
        f"first min(N, {MINIMAL_IMAGES}).",
        "",
        "Attacks: FGSM; PGD-40 (L∞, random start, step 2.5ε/40); APGD-CE (100 steps); APGD-CE+T = APGD-CE, then "
        "APGD-T (100 steps, 3 target classes) on what APGD-CE left (AutoAttack's chaining); Square (1,000 queries, "
        "no gradient); Transfer = PGD-40 crafted on the dataset's standard model (all 40 steps), replayed; "
        "Worst = an image counts as robust only if it survives every attack. Robust accuracy in %.",
        "",
    ]
    for dataset in ("mnist", "fashion_mnist"):
        ids = [m for m in rows if metas[m]["config"]["dataset"] == dataset]
        if not ids:
            continue
        lines += [f"## {'MNIST' if dataset == 'mnist' else 'Fashion-MNIST'}", ""]
        lines += ["| model | training | params | images | clean | mean \\|cos\\| input | DeepFool L2 median | EAD L1 median |",
                  "|---|---|---|---|---|---|---|---|"]
        for m in ids:
            r, meta = rows[m], metas[m]
            lines.append(f"| {meta['name']} | {describe(meta)} | {meta['parameters']:,} | {r.get('n', args.n)} | {fmt(r['clean'])} | "
                         f"{meta['metrics'].get('alignment_input', float('nan')):.2f} | {r['deepfool_l2_median']:.3f} | "
                         f"{r['ead_l1_median']:.2f} |")
        lines.append("")
        for eps in EPS[dataset]:
            lines += [f"**ε = {eps}** (L∞)", "", "| model | " + " | ".join(ATTACK_COLUMNS) + " |",
                      "|---" * (len(ATTACK_COLUMNS) + 1) + "|"]
            for m in ids:
                acc = rows[m]["eps"].get(str(eps), {})
                lines.append(f"| {metas[m]['name']} | " + " | ".join(fmt(acc.get(c)) for c in ATTACK_COLUMNS) + " |")
            lines.append("")
        lines += findings(ids, rows, metas, dataset)
    # The explanation the Attack page's masking warning points to (one text: robust_core.evaluation).
    lines += [f"## {MASKING_SECTION}", "", MASKING_EXPLANATION, ""]
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def findings(ids, rows, metas, dataset) -> list[str]:
    """The paper's claims, answered with this run's numbers."""
    def by_method(method, layers=None):
        for m in ids:
            c = metas[m]["config"]
            if c["method"] == method and (layers is None or c["method_kwargs"].get("layers") == layers):
                return m
        return None

    standard, pgd_at = by_method("standard"), by_method("pgd_at")
    gfas = [m for m in ids if metas[m]["config"]["method"] == "gfa"]
    out = ["### What the numbers say", ""]
    if standard is None:
        return out + ["No standard model for this dataset: no comparison.", ""]
    s = rows[standard]
    if pgd_at is None:
        out.append("- **No PGD-AT model for this dataset in this report**: the paper's comparison with adversarial "
                   "training cannot be made here; only the comparison with standard training.")
    sizes = {rows[m]["n"] for m in [standard, pgd_at, *gfas] if m is not None}
    if len(sizes) > 1:
        out.append(f"- **Caution**: the models compared below were evaluated on different numbers of images "
                   f"({', '.join(str(n) for n in sorted(sizes))}; the *images* column), all from the start of the "
                   "test set. A difference of a few points between them is within sampling noise.")
    for g in gfas:
        r, name = rows[g], metas[g]["name"]
        for eps in EPS[dataset]:
            e = str(eps)
            d_fgsm = r["eps"][e]["FGSM"] - s["eps"][e]["FGSM"]
            d_apgd = r["eps"][e]["APGD-CE+T"] - s["eps"][e]["APGD-CE+T"]
            line = (f"- {name} vs standard at ε = {eps}: FGSM {d_fgsm * 100:+.1f} points, APGD-CE+T {d_apgd * 100:+.1f} points "
                    "(the paper, on CIFAR-10, reports GFA ahead of adversarial training by +24.7 under FGSM and +15.2 under APGD)")
            if pgd_at is not None:
                p = rows[pgd_at]
                line += (f"; vs PGD-AT: FGSM {(r['eps'][e]['FGSM'] - p['eps'][e]['FGSM']) * 100:+.1f}, "
                         f"APGD-CE+T {(r['eps'][e]['APGD-CE+T'] - p['eps'][e]['APGD-CE+T']) * 100:+.1f}")
            out.append(line + ".")
        out.append(f"- {name}: median DeepFool L2 {r['deepfool_l2_median'] / s['deepfool_l2_median']:.2f}× and EAD L1 "
                   f"{r['ead_l1_median'] / s['ead_l1_median']:.2f}× the standard model's (paper: 20–30×).")
    masked = False
    for m in ids:
        r, name = rows[m], metas[m]["name"]
        for eps in EPS[dataset]:
            acc = r["eps"][str(eps)]
            gradient_best = min(acc["PGD-40"], acc["APGD-CE+T"])
            weaker = {k: acc[k] for k in ("FGSM", "Square", "Transfer") if k in acc and acc[k] < gradient_best - 0.02}
            if weaker:
                masked = True
                out.append(f"- **Gradient masking: {name} at ε = {eps}**: " + ", ".join(
                    f"{k} leaves {100 * v:.1f}%" for k, v in weaker.items())
                    + f" where the best white-box gradient attack leaves {100 * gradient_best:.1f}%.")
            if acc["FGSM"] >= 0.5 and acc["FGSM"] - acc["Worst"] > 0.3:
                out.append(f"- {name} at ε = {eps}: {100 * acc['FGSM']:.1f}% under FGSM but {100 * acc['Worst']:.1f}% "
                           "under the worst attack: single-step robustness that does not survive iterative attacks.")
    if not masked:
        out.append("- **Square and transfer break nothing that gradient attacks do not**: for every model and ε, neither "
                   "leaves more than 2 points below the best white-box gradient attack (PGD-40, APGD-CE+T).")
    out.append("")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--only", nargs="*", default=None, help="model ids to (re-)evaluate; others come from the cache")
    parser.add_argument("--out", default=str(REPO / "reports" / "deepdefense.md"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    device = get_device()
    store = ModelStore(tempfile.mkdtemp(prefix="deepdefense-store-"))
    installed = [(s, e) for s, e, status in install_shipped(store) if e is not None]
    CACHE.mkdir(parents=True, exist_ok=True)
    rows, metas = {}, {}
    standards = {s.meta["config"]["dataset"]: s.model_id for s, _ in installed
                 if s.meta["config"]["method"] == "standard"}
    transfer_caches = {dataset: {} for dataset in EPS}
    # The models the paper's claims are about come first, so that an interrupted run (each model and
    # each eps is cached) has answered the main questions; the table keeps the shipped order.
    for shipped, entry in sorted(installed, key=lambda se: PRIORITY.index(se[0].meta["config"]["method"])
                                 if se[0].meta["config"]["method"] in PRIORITY else len(PRIORITY)):
        meta = shipped.meta
        dataset = meta["config"]["dataset"]
        cache_file = CACHE / f"{shipped.model_id}-{args.n}.json"
        metas[shipped.model_id] = meta
        if cache_file.is_file() and (args.only is None or shipped.model_id not in args.only):
            rows[shipped.model_id] = {"n": args.n, **json.loads(cache_file.read_text())}
            continue
        if args.only is not None and shipped.model_id not in args.only:
            # Not asked for and not evaluated on N images: use its largest earlier evaluation, if any, and say
            # so in the report (the "images" column), rather than drop the model.
            earlier = sorted(CACHE.glob(f"{shipped.model_id}-*.json"), key=lambda f: int(f.stem.split("-")[1]))
            if earlier:
                rows[shipped.model_id] = {"n": int(earlier[-1].stem.split("-")[1]), **json.loads(earlier[-1].read_text())}
            continue
        data = load_dataset(dataset)
        x, y = data.test_x[: args.n].to(device), data.test_y[: args.n].to(device)
        # Channels-last copies: the same weights and arithmetic, 1.3-1.4x faster forward-backward passes on
        # CPU for the CNNs at 1,000 images (measured for this report); a no-op for MLPs and on CUDA.
        model = channels_last_copy(store.load(shipped.model_id, device=device))
        source_id = standards.get(dataset)
        source = (channels_last_copy(store.load(source_id, device=device))
                  if source_id and source_id != shipped.model_id else None)
        print(f"{meta['name']} [{shipped.model_id}]", flush=True)
        partial = CACHE / "partial" / f"{shipped.model_id}-{args.n}.json"
        rows[shipped.model_id] = evaluate_model(model, x, y, eps_grid=EPS[dataset], source=source,
                                                transfer_cache=transfer_caches[dataset], partial=partial,
                                                log=lambda s: print(s, flush=True))
        rows[shipped.model_id]["total_seconds"] = sum(rows[shipped.model_id]["seconds"].values())
        cache_file.write_text(json.dumps(rows[shipped.model_id], indent=1))
        partial.unlink(missing_ok=True)
        rows[shipped.model_id]["n"] = args.n
    order = [s.model_id for s, _ in installed]
    rows = {m: rows[m] for m in order if m in rows}
    metas = {m: metas[m] for m in rows}
    text = write_report(rows, metas, args, Path(args.out))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
