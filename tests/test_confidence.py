"""Confidence, calibration and selective prediction."""
import numpy as np
import pytest
import torch

from robust_core.confidence import (brier, calibration_metrics, confidence, fit_temperature, nll, quantiles, reliability,
                                    risk_coverage)


def test_ece_on_hand_built_bins():
    # Two bins of [0,0.5) [0.5,1]: confidences 0.2,0.2 (one right) and 0.9,0.9 (both right).
    conf = torch.tensor([0.2, 0.2, 0.9, 0.9])
    correct = torch.tensor([1.0, 0.0, 1.0, 1.0])
    bins = reliability(conf, correct, n_bins=2)
    assert bins.count == [2, 2] and bins.accuracy == [0.5, 1.0]
    assert bins.ece == pytest.approx(0.5 * abs(0.5 - 0.2) + 0.5 * abs(1.0 - 0.9))
    assert bins.mce == pytest.approx(0.3)


def test_a_perfectly_calibrated_predictor_has_ece_near_zero():
    g = torch.Generator().manual_seed(0)
    conf = torch.rand(200_000, generator=g) * 0.5 + 0.5
    correct = (torch.rand(200_000, generator=g) < conf).float()
    assert reliability(conf, correct).ece < 0.01


def test_temperature_scaling_never_raises_validation_nll(small_cnn, mnist):
    with torch.no_grad():
        logits = small_cnn(mnist.val_x[:1000])
    y = mnist.val_y[:1000]
    t = fit_temperature(logits, y)
    assert nll((logits / t).softmax(1), y) <= nll(logits.softmax(1), y) + 1e-9
    overconfident = logits * 5  # a model made overconfident: the fitted temperature cools it down
    t5 = fit_temperature(overconfident, y)
    assert t5 > 2 and nll((overconfident / t5).softmax(1), y) < nll(overconfident.softmax(1), y)


def test_knn_confidence_takes_multiples_of_one_over_k(mnist):
    from robust_core.models import build_model, predict_proba

    knn = build_model("knn", "mnist", k=3)
    knn.fit(mnist.train_x[:2000], mnist.train_y[:2000])
    m = confidence(predict_proba(knn, mnist.test_x[:300]))
    assert torch.allclose(m * 3, (m * 3).round(), atol=1e-6) and set((m * 3).round().int().tolist()) <= {1, 2, 3}


def test_quantiles_match_numpy_and_other_metrics():
    v = torch.rand(1001)
    qs = quantiles(v)
    for q, value in qs.items():
        assert value == pytest.approx(float(np.quantile(v.numpy().astype(np.float64), q)))
    proba = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    y = torch.tensor([0, 1])
    assert brier(proba, y) == pytest.approx((0 + 0.5) / 2)
    assert calibration_metrics(proba, y)["accuracy"] == 0.5
    coverage, accuracy = risk_coverage(torch.tensor([0.9, 0.1, 0.8]), torch.tensor([1.0, 0.0, 1.0]))
    assert coverage == pytest.approx([1 / 3, 2 / 3, 1.0]) and accuracy == pytest.approx([1.0, 1.0, 2 / 3])
