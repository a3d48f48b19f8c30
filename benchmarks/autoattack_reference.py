"""Our AutoAttack and FAB against the reference implementation (pyautoattack, Croce & Hein's code on PyPI).

    python -m benchmarks.autoattack_reference [--model standard pgd_at] [--start 0] [--n 1000] [--eps 0.3 ...]
        [--chunk 200] [--fab-n 200] [--out benchmarks/out/aa_reference]
    # e.g. the FGSM-AT CNN at both ε on 1,000 images from index 5000, without the FAB-L2 part:
    OMP_NUM_THREADS=1 python -m benchmarks.autoattack_reference --model fgsm_at --start 5000 --n 1000 --eps 0.3 0.1 \
        --fab-n 0

Needs pyautoattack, which the lab does not depend on: install it in the benchmark's own environment
(``pip install -r benchmarks/requirements-reference.txt``). On the shipped MNIST CNNs named by ``--model`` (their
training method: standard, pgd_at, fgsm_at, trades, gfa_deep, gfa_first, gnr), the test images ``--start`` to
``--start + --n``, one process (same threads for both), it reports:

- AutoAttack standard at each L∞ ``--eps``: robust accuracy after every stage and time, ours (``run_autoattack``) and
  the reference's (``AutoAttack(version="standard").run_standard_evaluation``, its stages read from its own robust
  flags as it records them), each final verdict a forward pass of the model; then, per stage, the images one side
  left robust that the other broke (test-set indices);
- FAB-L2 as a minimum-norm attack on the first ``--fab-n`` correctly classified images from ``--start`` (0: skipped):
  success rate and median L2, ours (``fab(norm="l2")``) and the reference's (``FABAttack_PT(norm="L2")``, 100
  iterations, 1 restart, both), and our best-of (``robust_core.minimal_norm``) on the same images.

Resumable: AutoAttack runs in chunks of ``--chunk`` images (the reference, then ours, on the same chunk); each side's
per-image results for a chunk are saved as JSON under ``--out``, ours under a hash of our attacks' source (a change
to them recomputes ours only), and a rerun with the same settings reuses them. Times of the two sides may then come
from different sittings of a shared machine. Both attacks draw their random starts per call, so a chunk size is part
of the protocol (docs/evaluation.md's tables use the default, ``--chunk 200``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import torch

from robust_core.attacks import fab, flat_norm
from robust_core.attacks.autoattack import VERSIONS, run_autoattack
from robust_core.data import load_dataset
from robust_core.file_locks import atomic_write_text
from robust_core.minimal_norm import best_minimal_perturbation
from robust_core.shipped import install_shipped
from robust_core.store import ModelStore
from robust_core.tensors import predict

STAGES = [name for name, _ in VERSIONS["standard"]]  # ours; the reference's are the same four, in the same order
REFERENCE_STAGES = ["apgd-ce", "apgd-t", "fab-t", "square"]
SHIPPED_KEYS = {"standard": "standard", "pgd_at": "pgd_at", "fgsm_at": "fgsm_at", "trades": "trades",
                "gnr": "gnr", "gfa_deep": "gfa", "gfa_first": "gfa"}


def shipped_cnns(wanted: list[str]) -> dict[str, torch.nn.Module]:
    """The shipped MNIST CNNs named in ``wanted`` (keys of SHIPPED_KEYS), in eval mode."""
    store = ModelStore(tempfile.mkdtemp(prefix="aa-ref-"))
    models = {}
    for shipped, entry, _ in install_shipped(store):
        config = shipped.meta["config"]
        if entry is None or config["dataset"] != "mnist" or config["arch"] != "cnn":
            continue
        key = config["method"]
        if key == "gfa":
            key = f"gfa_{config['method_kwargs'].get('layers')}"
        if key in wanted:
            models[key] = store.load(entry.model_id).eval()
    missing = sorted(set(wanted) - set(models))
    if missing:
        raise SystemExit(f"no shipped MNIST CNN for {missing}; choose from {sorted(SHIPPED_KEYS)}")
    return models


def ours_version() -> str:
    """A short hash of our attacks' source files: the key under which our saved results stay valid."""
    digest = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parents[1] / "robust_core" / "attacks").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def stage_of(robust_after: list[torch.Tensor], clean: torch.Tensor) -> list[int]:
    """Per image: 0 if misclassified clean, k if stage k (1-based) broke it, -1 if robust after every stage."""
    out = torch.where(clean, -1, 0)
    for k in range(len(robust_after), 0, -1):
        before = robust_after[k - 2] if k > 1 else clean
        out = torch.where(before & ~robust_after[k - 1], k, out)
    return out.tolist()


def ours_chunk(model, x, y, eps: float) -> dict:
    """Our AutoAttack standard on one chunk: per-image breaking stage, per-stage seconds."""
    clean = predict(model, x) == y
    t0 = time.perf_counter()
    report = run_autoattack(model, x, y, eps=eps, version="standard", seed=0)
    seconds = time.perf_counter() - t0
    robust_after = [(report.broken_at == -1) | (report.broken_at > k + 1) for k in range(len(STAGES))]
    final = predict(model, report.x_adv) == y  # the model's verdict on what ours returns
    assert torch.equal(final, robust_after[-1]), "our report's flags differ from the model's verdict"
    return {"stage": stage_of(robust_after, clean), "s": seconds,
            "stage_s": [s.seconds for s in report.stages], "threads": torch.get_num_threads()}


def reference_chunk(model, x, y, eps: float, device: str = "cpu") -> dict:
    """The reference's AutoAttack standard on one chunk, its robust flags recorded as each stage ends."""
    from pyautoattack import AutoAttack
    from pyautoattack.state import EvaluationState

    clean = predict(model, x) == y
    recorded: list[torch.Tensor] = []
    original = EvaluationState.add_run_attack

    def add_run_attack(state, attack):  # the reference calls this once per stage, after its last batch
        recorded.append(state.robust_flags.clone())
        return original(state, attack)

    EvaluationState.add_run_attack = add_run_attack
    try:
        t0 = time.perf_counter()
        reference = AutoAttack(model, eps=eps, norm="Linf", version="standard", seed=0, device=device)
        assert reference.attacks_to_run == REFERENCE_STAGES, reference.attacks_to_run
        x_ref, _ = reference.run_standard_evaluation(x, y, batch_size=250)
        seconds = time.perf_counter() - t0
    finally:
        EvaluationState.add_run_attack = original
    # It stops once nothing is robust: the stages it skipped leave the flags as they were.
    while len(recorded) < len(REFERENCE_STAGES):
        recorded.append(recorded[-1].clone() if recorded else clean.clone())
    assert float((x_ref - x).abs().max()) <= eps + 1e-5
    final = predict(model, x_ref) == y
    # Its last flags are its own forward pass; a disagreement with ours would be float rounding at a boundary.
    recorded[-1] = recorded[-1] & final
    return {"stage": stage_of(recorded, clean), "s": seconds, "threads": torch.get_num_threads()}


def summarise(label: str, eps: float, start: int, rows: list[dict]) -> None:
    """Per-stage robust accuracy of both, and the images on which they disagree."""
    ours = [s for r in rows for s in r["ours"]["stage"]]
    ref = [s for r in rows for s in r["ref"]["stage"]]
    n = len(ours)

    def robust_after(stages, k):  # k = 0: clean
        return [s == -1 or s > k for s in stages]

    ours_s = sum(r["ours"]["s"] for r in rows)
    ref_s = sum(r["ref"]["s"] for r in rows)
    threads = sorted({r[side]["threads"] for r in rows for side in ("ours", "ref")})
    print(f"\n{label} CNN, L∞ ε = {eps:g}, test images {start}–{start + n - 1} ({n}), threads {threads}: "
          f"ours {ours_s:.0f} s, reference {ref_s:.0f} s")
    print("| after | ours | reference | gap | ours robust, reference broke | reference robust, ours broke |")
    print("|---|---|---|---|---|---|")
    for k, name in enumerate(["clean"] + STAGES):
        a, b = robust_after(ours, k), robust_after(ref, k)
        only_ours = [start + i for i in range(n) if a[i] and not b[i]]
        only_ref = [start + i for i in range(n) if b[i] and not a[i]]
        print(f"| {name} | {100 * sum(a) / n:.1f}% | {100 * sum(b) / n:.1f}% | {100 * (sum(a) - sum(b)) / n:+.1f} pts "
              f"| {len(only_ours)} | {len(only_ref)} |")
    final_ours, final_ref = robust_after(ours, len(STAGES)), robust_after(ref, len(STAGES))
    names = ["clean"] + STAGES
    for side, mine, other, stages in (("ours", final_ours, final_ref, ref), ("reference", final_ref, final_ours, ours)):
        found = [f"{start + i} ({names[stages[i]]})" for i in range(n) if mine[i] and not other[i]]
        print(f"robust under {side} only (the stage that broke it on the other side): {', '.join(found) or 'none'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=["standard", "pgd_at"], choices=sorted(SHIPPED_KEYS))
    parser.add_argument("--start", type=int, default=0, help="first MNIST test image")
    parser.add_argument("--n", type=int, default=1000, help="number of test images from --start")
    parser.add_argument("--eps", type=float, nargs="+", default=[0.3])
    parser.add_argument("--chunk", type=int, default=200, help="images per AutoAttack call (and per saved result)")
    parser.add_argument("--fab-n", type=int, default=200, help="FAB-L2 and best-of on N correctly classified (0: skip)")
    parser.add_argument("--only-reference", action="store_true",
                        help="compute (and save) the reference's chunks only, e.g. while ours is being changed")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "aa_reference",
                        help="folder for the per-chunk results a rerun resumes from")
    args = parser.parse_args(argv)
    if args.start < 0 or args.n < 1 or args.chunk < 1 or args.start + args.n > 10000:
        parser.error("need 0 <= --start, 1 <= --n, --start + --n <= 10000 (the MNIST test set), --chunk >= 1")
    args.out.mkdir(parents=True, exist_ok=True)

    def cached(name: str, compute):
        """The saved result of ``compute()`` under ``name``, computing and saving it if absent."""
        path = args.out / f"{name}.json"
        if path.exists():
            return json.loads(path.read_text())
        result = compute()
        atomic_write_text(path, json.dumps(result))
        return result

    models = shipped_cnns(args.model)
    data = load_dataset("mnist")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, MNIST test images {args.start}–"
          f"{args.start + args.n - 1}, chunks of {args.chunk}, L∞ ε = {', '.join(f'{e:g}' for e in args.eps)}",
          flush=True)
    for label, model in models.items():
        for eps in args.eps:
            rows = []
            for lo in range(args.start, args.start + args.n, args.chunk):
                hi = min(lo + args.chunk, args.start + args.n)
                x, y = data.test_x[lo:hi], data.test_y[lo:hi]

                part = f"{label}-eps{eps:g}-{lo}-{hi}"
                row = {"ref": cached(f"aa-reference-{part}", lambda: reference_chunk(model, x, y, eps))}
                if args.only_reference:
                    robust = row["ref"]["stage"].count(-1)
                    print(f"  {label} ε {eps:g} images {lo}–{hi - 1}: robust reference {robust}", flush=True)
                    continue
                # Ours is saved under the hash of our attacks' source: a change to them recomputes ours only.
                row["ours"] = cached(f"aa-ours-{ours_version()}-{part}", lambda: ours_chunk(model, x, y, eps))
                rows.append(row)
                print(f"  {label} ε {eps:g} images {lo}–{hi - 1}: robust ours {row['ours']['stage'].count(-1)}, "
                      f"reference {row['ref']['stage'].count(-1)} of {hi - lo}", flush=True)
            if rows:
                summarise(label, eps, args.start, rows)
    if args.fab_n <= 0 or args.only_reference:
        return 0
    print("\n| model | FAB-L2, ours: success / median L2 | time | reference: success / median L2 | time | "
          "best-of, ours: success / median L2 | time | best-of vs reference FAB-L2 |")
    print("|---|---|---|---|---|---|---|---|")
    from pyautoattack.fab_pt import FABAttack_PT

    for label, model in models.items():
        n = args.fab_n
        pool_x, pool_y = data.test_x[args.start: args.start + 4 * n], data.test_y[args.start: args.start + 4 * n]
        correct = (predict(model, pool_x) == pool_y).nonzero().flatten()[:n]
        xc, yc = pool_x[correct], pool_y[correct]

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
        r = cached(f"fab-l2-{label}-start{args.start}-n{n}", fab_rows)
        cells = [f"{100 * r[k]['success']:.1f}% / {r[k]['median']:.3f} | {r[k]['s']:.0f} s"
                 for k in ("ours", "reference", "best-of")]
        gain = 100 * (r["best-of"]["median"] / r["reference"]["median"] - 1)
        print(f"| {label} | {' | '.join(cells)} | {gain:+.1f}% |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
