"""Confidence page speed: full-test-set predictions for the CNN, k-NN (k = 3) and logistic regression.

    python benchmarks/confidence_speed.py

Fits the two baselines on the training split (55,000 images; fitting is timed too), then times the
predictions for the 10,000 test images of each model (the page caches them afterwards), and prints
accuracy, ECE and the seed's quantiles of m(x).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robust_core.confidence import calibration_metrics, confidence, quantiles  # noqa: E402
from robust_core.data import load_dataset  # noqa: E402
from robust_core.models import predict_proba  # noqa: E402
from robust_core.shipped import install_shipped  # noqa: E402
from robust_core.store import ModelStore  # noqa: E402
from robust_core.training import TrainConfig  # noqa: E402


def main() -> int:
    store = ModelStore(tempfile.mkdtemp())
    data = load_dataset("mnist")
    cnn_id = next(e.model_id for s, e, _ in install_shipped(store)
                  if e is not None and s.meta["config"]["method"] == "standard" and s.meta["config"]["dataset"] == "mnist")
    models = {"CNN": store.load(cnn_id)}
    for arch in ("knn", "logreg"):
        t0 = time.perf_counter()
        model, _, _ = store.train_or_load(TrainConfig(arch=arch), data=data)
        print(f"fit {arch}: {time.perf_counter() - t0:.1f} s")
        models[arch] = model
    for name, model in models.items():
        t0 = time.perf_counter()
        proba = predict_proba(model, data.test_x)
        seconds = time.perf_counter() - t0
        m = calibration_metrics(proba, data.test_y)
        q = quantiles(confidence(proba))
        print(f"{name:7s} predictions for 10,000 test images in {seconds:6.2f} s; accuracy {100 * m['accuracy']:.2f}%, "
              f"ECE {m['ece']:.4f}; quantiles " + ", ".join(f"Q{k:.2f}={v:.3f}" for k, v in q.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
