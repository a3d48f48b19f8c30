"""Confidence page speed: full-test-set predictions for the CNN, k-NN (k = 3) and logistic regression.

    python -m benchmarks.confidence_speed

Fits the two baselines on the training split (55,000 images; fitting is timed too), then times the
predictions for the 10,000 test images of each model (the page caches them afterwards), and prints
accuracy, ECE and the page's quantiles of m(x). Then the Confidence page itself (Streamlit's AppTest,
in this process): its first render with the CNN, the k-NN and the logistic regression on the default
1,000 test images, nothing cached yet, and a second render that reads the caches.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path


from robust_core.confidence import calibration_metrics, confidence, quantiles
from robust_core.data import load_dataset
from robust_core.models import predict_proba
from robust_core.shipped import install_shipped
from robust_core.store import ModelStore
from robust_core.training import TrainConfig


def main() -> int:
    store = ModelStore(tempfile.mkdtemp())
    data = load_dataset("mnist")
    cnn_id = next(e.model_id for s, e, _ in install_shipped(store)
                  if e is not None and s.meta["config"]["method"] == "standard"
                  and s.meta["config"]["dataset"] == "mnist")
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
    page_render_times(store.root)
    return 0


def page_render_times(store_root) -> None:
    """Seconds for the Confidence page's first render (nothing cached) and for a rerun."""
    import os

    from streamlit.testing.v1 import AppTest

    os.environ["ROBUST_STORE_DIR"] = str(store_root)
    os.environ["ROBUST_SHIPPED_MODELS"] = "0"  # the store already holds them
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=600).run()
    at.switch_page("lab_pages/confidence.py")
    t0 = time.perf_counter()
    at.run()
    first = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError([e.value for e in at.exception])
    models = list(at.dataframe[0].value["Model"])
    t0 = time.perf_counter()
    at.run()
    again = time.perf_counter() - t0
    print(f"Confidence page ({', '.join(models)}; 1,000 test images): first render {first:.2f} s, rerun {again:.2f} s")


if __name__ == "__main__":
    raise SystemExit(main())
