"""Our AutoAttack and FAB against the reference implementation (pyautoattack, Croce & Hein's code on PyPI).

    python benchmarks/autoattack_reference.py [--n 1000] [--eps 0.3] [--fab-n 200] [--out benchmarks/out/aa_reference]

Needs pyautoattack, which the lab does not depend on: install it in the benchmark's own environment
(``pip install -r benchmarks/requirements-reference.txt``). On the shipped MNIST standard and PGD-AT CNNs, the first
``--n`` test images, one process (same threads for both), it reports:

- AutoAttack standard at L∞ ``--eps``: robust accuracy and time, ours (``run_autoattack``) and the reference's
  (``AutoAttack(version="standard").run_standard_evaluation``), each judged by a forward pass of the model;
- FAB-L2 as a minimum-norm attack on the first ``--fab-n`` correctly classified images: success rate and median L2, ours
  (``fab(norm="l2")``) and the reference's (``FABAttack_PT(norm="L2")``, 100 iterations, 1 restart, both), and our
  best-of (``robust_core.minimal_norm``: FAB-L2, DeepFool, C&W, the smallest verified per image) on the same images.

Resumable: each model's rows (ours and the reference together, so each time ratio comes from one sitting) are saved
as JSON under ``--out`` once both are done, and a rerun with the same settings prints them without recomputing.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from robust_core.attacks import fab, flat_norm  # noqa: E402
from robust_core.attacks._common import predict  # noqa: E402
from robust_core.attacks.autoattack import run_autoattack  # noqa: E402
from robust_core.data import load_dataset  # noqa: E402
from robust_core.minimal_norm import best_minimal_perturbation  # noqa: E402
from robust_core.shipped import install_shipped  # noqa: E402
from robust_core.store import ModelStore  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="AutoAttack on the first N test images")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--fab-n", type=int, default=200, help="FAB-L2 and best-of on the first N correctly classified")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "aa_reference",
                        help="folder for the per-model results a rerun resumes from")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    def cached(name: str, compute):
        """The saved result of ``compute()`` for this part and these settings, computing and saving it if absent."""
        path = args.out / f"{name}-n{args.n}-eps{args.eps}-fab{args.fab_n}.json"
        if path.exists():
            return json.loads(path.read_text())
        result = compute()
        path.write_text(json.dumps(result))
        return result

    from pyautoattack import AutoAttack
    from pyautoattack.fab_pt import FABAttack_PT

    store = ModelStore(tempfile.mkdtemp(prefix="aa-ref-"))
    models = {}
    for shipped, entry, _ in install_shipped(store):
        config = shipped.meta["config"]
        if entry is not None and config["dataset"] == "mnist" and config["method"] in ("standard", "pgd_at"):
            models.setdefault({"standard": "standard", "pgd_at": "PGD-AT"}[config["method"]], store.load(entry.model_id).eval())
    data = load_dataset("mnist")
    x, y = data.test_x[: args.n], data.test_y[: args.n]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, first {args.n} MNIST test images, L∞ ε = {args.eps}")
    print("\n| model | AutoAttack standard, ours | time | reference (pyautoattack) | time | gap | ours, speed-up |")
    print("|---|---|---|---|---|---|---|")
    for label, model in sorted(models.items(), reverse=True):
        def autoattack_pair(model=model):
            t0 = time.perf_counter()
            report = run_autoattack(model, x, y, eps=args.eps, version="standard", seed=0)
            ours_t = time.perf_counter() - t0
            ours = float((predict(model, report.x_adv) == y).float().mean())
            t0 = time.perf_counter()
            reference = AutoAttack(model, eps=args.eps, norm="Linf", version="standard", seed=0, device="cpu")
            x_ref, _ = reference.run_standard_evaluation(x, y, batch_size=250)  # (adversarial images, their labels)
            ref_t = time.perf_counter() - t0
            ref = float((predict(model, x_ref) == y).float().mean())
            assert float((x_ref - x).abs().max()) <= args.eps + 1e-5
            return {"ours": ours, "ours_s": ours_t, "ref": ref, "ref_s": ref_t, "threads": torch.get_num_threads()}
        r = cached(f"autoattack-{label}", autoattack_pair)
        print(f"| {label} | {100 * r['ours']:.1f}% | {r['ours_s']:.0f} s | {100 * r['ref']:.1f}% | {r['ref_s']:.0f} s | "
              f"{100 * (r['ours'] - r['ref']):+.1f} pts | {r['ref_s'] / r['ours_s']:.2f}× |", flush=True)
    print("\n| model | FAB-L2, ours: success / median L2 | time | reference: success / median L2 | time | "
          "best-of, ours: success / median L2 | time | best-of vs reference FAB-L2 |")
    print("|---|---|---|---|---|---|---|---|")
    for label, model in sorted(models.items(), reverse=True):
        n = args.fab_n
        correct = (predict(model, data.test_x[: 4 * n]) == data.test_y[: 4 * n]).nonzero().flatten()[:n]
        xc, yc = data.test_x[correct], data.test_y[correct]

        def fab_rows(model=model, xc=xc, yc=yc):
            rows = {}
            for name, run in (("ours", lambda: fab(model, xc, yc, norm="l2", n_iter=100, seed=0)),
                              ("reference", lambda: FABAttack_PT(model, norm="L2", n_restarts=1, n_iter=100, eps=1e6,
                                                                 seed=0, device="cpu").perturb(xc, yc)),
                              ("best-of", lambda: best_minimal_perturbation(model, xc, yc, norm="l2", seed=0).x_adv)):
                t0 = time.perf_counter()
                adv = run()
                seconds = time.perf_counter() - t0
                fooled = predict(model, adv) != yc
                # Failed images count as infinitely far: the median is over all images, as a success rate below 50%
                # shows.
                norms = torch.where(fooled, flat_norm(adv - xc, "l2"), torch.tensor(float("inf")))
                rows[name] = {"success": float(fooled.float().mean()), "median": float(norms.median()), "s": seconds}
            return rows
        r = cached(f"fab-l2-{label}", fab_rows)
        cells = [f"{100 * r[k]['success']:.1f}% / {r[k]['median']:.3f} | {r[k]['s']:.0f} s" for k in ("ours", "reference", "best-of")]
        print(f"| {label} | {' | '.join(cells)} | {100 * (r['best-of']['median'] / r['reference']['median'] - 1):+.1f}% |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
