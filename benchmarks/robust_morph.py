"""Does the morph draw the target, or only fool the model? 4 -> 9 on the shipped MNIST CNNs, both recipes.

    python -m benchmarks.robust_morph [--n 20]

For the first ``n`` test-set 4s and a 4 drawn as the page's canvas draws it, each shipped CNN (standard,
PGD-AT, TRADES, GFA deep, FGSM-AT) morphs the image toward 9 with the page's defaults (``RECIPES["smoothed"]``)
and with the plain normalised-gradient recipe (``RECIPES["seed"]``), stopping at p(9) = 0.99 or 200 steps. A
morph *looks like* a 9 when classifiers that were not optimised against read a 9: the k-NN baseline (k = 3, the
55,000 training images) and the other CNNs. Also prints each model's dark-pixel gradient share (why the plain
recipe stalls on adversarially trained models). Deterministic: no timing, the machine's load does not matter.
"""
from __future__ import annotations

import argparse
import tempfile

import torch

from robust_core.classviz import RECIPES, dark_gradient_share, knn_read, visualize
from robust_core.data import load_dataset
from robust_core.shipped import install_shipped
from robust_core.store import ModelStore
from tests.test_classviz import drawn_four  # the same drawn 4 as the test

KINDS = {"standard": "standard", "pgd_at": "PGD-AT", "trades": "TRADES", "gfa": "GFA deep", "fgsm_at": "FGSM-AT"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="first n test-set 4s")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("mnist")
    store = ModelStore(tempfile.mkdtemp())
    install_shipped(store)
    models = {}
    for e in store.list("mnist"):
        c = e.meta["config"]
        if (c["arch"] == "cnn" and c["method"] in KINDS
                and (c["method"] != "gfa" or c["method_kwargs"].get("layers") == "deep")):
            models[KINDS[c["method"]]] = store.load(e.model_id)
    fours = data.test_x[(data.test_y == 4).nonzero().flatten()[: args.n]]
    print(f"first test 4 (index {int((data.test_y == 4).nonzero()[0])}) and a drawn 4; target 9; threshold 0.99\n")
    print("| model | dark-pixel gradient share (test 4) | recipe | test 4: p(9) | k-NN reads | drawn 4: p(9) "
          f"| k-NN reads | first {args.n} test 4s: p(9) ≥ 0.9 | k-NN reads 9 | other CNNs read 9 (mean share) |")
    print("|---" * 10 + "|")
    for name, model in models.items():
        share = dark_gradient_share(model, fours[0], 9)
        for recipe in ("smoothed", "seed"):
            single = []
            for start in (fours[0], drawn_four()):
                r = visualize(model, 9, start="image", image=start, threshold=0.99, **RECIPES[recipe])
                knn, _ = knn_read(r.final, data.train_x, data.train_y)
                single += [f"{float(r.final_probabilities[0, 9]):.3f}", str(int(knn[0]))]
            finals, reached = [], 0
            for four in fours:
                r = visualize(model, 9, start="image", image=four, threshold=0.99, **RECIPES[recipe])
                finals.append(r.final)
                reached += int(r.final_probabilities[0, 9] >= 0.9)
            finals = torch.cat(finals)
            knn, _ = knn_read(finals, data.train_x, data.train_y)
            with torch.no_grad():
                others = [float((m(finals).argmax(1) == 9).float().mean()) for n, m in models.items() if n != name]
            print(f"| {name} | {share:.1e} | {recipe} | " + " | ".join(single) +
                  f" | {reached}/{args.n} | {int((knn == 9).sum())}/{args.n} | "
                  f"{100 * sum(others) / len(others):.0f}% |", flush=True)


if __name__ == "__main__":
    main()
