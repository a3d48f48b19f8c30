"""Time of every saliency method for one 28 x 28 MNIST image on three models.

    python -m benchmarks.saliency_speed

Models: the shipped standard, PGD-AT and GFA-deep CNNs (installed into a temporary store). Each method
runs once to warm up, then the median of 5 runs is printed, with the total per model, against the
page's budget of 1 s for all methods (Integrated Gradients with many steps and Occlusion excepted).
"""
from __future__ import annotations

import statistics
import tempfile
import time


import torch

from robust_core.data import load_dataset
from robust_core.saliency import METHODS, attribute
from robust_core.shipped import install_shipped
from robust_core.store import ModelStore


def main() -> int:
    store = ModelStore(tempfile.mkdtemp())
    wanted = {"standard": None, "pgd_at": None, "gfa": None}
    for shipped, entry, _ in install_shipped(store):
        c = shipped.meta["config"]
        if c["dataset"] == "mnist" and c["method"] in wanted and wanted[c["method"]] is None and entry is not None:
            wanted[c["method"]] = entry.model_id
    data = load_dataset("mnist")
    x, y = data.test_x[:1], data.test_y[:1]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; one image, median of 5 runs (ms)")
    print(f"{'method':28s}" + "".join(f"{k:>10s}" for k in wanted))
    totals = dict.fromkeys(wanted, 0.0)
    for method in METHODS:
        row = []
        for label, model_id in wanted.items():
            if model_id is None:
                row.append(float("nan"))
                continue
            model = store.load(model_id)
            attribute(model, x, y, method)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                attribute(model, x, y, method)
                times.append(time.perf_counter() - t0)
            ms = 1000 * statistics.median(times)
            row.append(ms)
            if method not in ("integrated_gradients", "occlusion"):
                totals[label] += ms
        print(f"{METHODS[method].title:28s}" + "".join(f"{v:10.1f}" for v in row))
    print(f"{'all but IG and Occlusion':28s}" + "".join(f"{v:10.1f}" for v in totals.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
