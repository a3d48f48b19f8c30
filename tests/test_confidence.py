"""Confidence, calibration and selective prediction."""
import numpy as np
import pytest
import torch

from robust_core.confidence import (
    brier,
    calibration_metrics,
    confidence,
    fit_temperature,
    nll,
    quantiles,
    reliability,
    risk_coverage,
)


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


def test_logistic_regression_has_logits_and_is_attacked_white_box(mnist):
    from robust_core.confidence import adversarial_inputs, scores
    from robust_core.models import build_model, predict_proba

    logreg = build_model("logreg", "mnist", max_iter=50).fit(mnist.train_x[:2000], mnist.train_y[:2000])
    x, y = mnist.test_x[:300], mnist.test_y[:300]
    proba, logits = scores(logreg, x)
    assert logits is not None and torch.allclose(proba, predict_proba(logreg, x), atol=1e-6)
    x_adv = adversarial_inputs(logreg, x, y, attack="pgd", eps=0.1)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    clean_acc = float((proba.argmax(1) == y).float().mean())
    attacked_acc = float((predict_proba(logreg, x_adv).argmax(1) == y).float().mean())
    assert clean_acc > 0.8 and attacked_acc < clean_acc - 0.5  # a linear model on pixels falls to ε = 0.1


def test_knn_has_no_logits_and_no_white_box_attack(mnist):
    from robust_core.confidence import adversarial_inputs, scores
    from robust_core.models import build_model

    knn = build_model("knn", "mnist").fit(mnist.train_x[:1000], mnist.train_y[:1000])
    proba, logits = scores(knn, mnist.test_x[:50])
    assert logits is None and torch.allclose(proba.sum(1), torch.ones(50))
    with pytest.raises(ValueError, match="no input gradient"):
        adversarial_inputs(knn, mnist.test_x[:50], mnist.test_y[:50], attack="fgsm", eps=0.1)


def test_pgd_for_confidence_maximises_the_loss_instead_of_stopping_at_the_boundary(small_cnn, mnist):
    """Stopping at the first misclassification leaves the attacked images where m(x) is about 1/2;
    the confidence analysis runs every step, so it sees how sure the model is of its mistakes."""
    from robust_core.attacks import pgd
    from robust_core.confidence import adversarial_inputs, scores

    x, y = mnist.test_x[:200], mnist.test_y[:200]
    full, _ = scores(small_cnn, adversarial_inputs(small_cnn, x, y, attack="pgd", eps=0.2))
    stopped, _ = scores(small_cnn, pgd(small_cnn, x, y, eps=0.2, steps=20, stop_on_success=True))
    fooled = (full.argmax(1) != y) & (stopped.argmax(1) != y)
    assert fooled.sum() > 50
    assert confidence(full[fooled]).mean() > confidence(stopped[fooled]).mean() + 0.1


def test_logistic_regression_fit_matches_scikit_learn(mnist):
    """The torch L-BFGS fit minimises scikit-learn's objective: same predictions once both converge."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    from robust_core.models import build_model

    x, y = mnist.train_x[:500], mnist.train_y[:500]
    ours = build_model("logreg", "mnist", C=0.1, max_iter=200).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = LogisticRegression(C=0.1, max_iter=200).fit(x.reshape(500, -1).numpy(), y.numpy())
    test = mnist.test_x[:500]
    agree = (ours.predict_proba(test).argmax(1).numpy() == reference.predict(test.reshape(500, -1).numpy())).mean()
    assert agree > 0.99
    reference_proba = torch.from_numpy(reference.predict_proba(test.reshape(500, -1).numpy())).float()
    assert torch.allclose(ours.predict_proba(test), reference_proba, atol=0.03)


def test_logistic_regression_loads_a_checkpoint_that_lacks_a_class(mnist):
    """scikit-learn checkpoints keep only the classes seen in training: an absent class gets probability 0."""
    from robust_core.models import build_model

    fitted = build_model("logreg", "mnist", max_iter=20).fit(mnist.train_x[:500], mnist.train_y[:500])
    state = fitted.state_dict()
    keep = torch.tensor([c for c in range(10) if c != 4])
    old = {"coef": state["coef"][keep], "intercept": state["intercept"][keep], "classes": keep}
    loaded = build_model("logreg", "mnist")
    loaded.load_state_dict(old)
    proba = loaded.predict_proba(mnist.test_x[:100])
    assert torch.all(proba[:, 4] == 0) and torch.allclose(proba.sum(1), torch.ones(100))
    with pytest.raises(ValueError, match="NaN"):
        build_model("logreg", "mnist").load_state_dict({**state, "coef": state["coef"] * float("nan")})
