import math

import pytest

from robust_core.training import (
    TRAINING_METHODS,
    BatchLoss,
    TrainConfig,
    TrainingCancelled,
    evaluate,
    train_model,
)

from .conftest import state_equal


def test_short_training_reaches_stated_accuracy(mnist):
    # 5,000 images x 2 epochs of the default recipe: about 3 s on 2 cores.
    result = train_model(TrainConfig(train_subset=5000, epochs=2), data=mnist, device="cpu")
    assert result.metrics["test_acc"] >= 0.93, result.metrics
    assert len(result.history["batches"]) == 2 * 20  # the batch-level curve is kept without a callback
    assert result.history["val_acc"][1] >= result.history["val_acc"][0] - 0.01
    assert not result.model.training


def test_same_seed_same_model_other_seed_other_model(mnist):
    config = TrainConfig(train_subset=640, epochs=1, batch_size=64, dropout=0.2)
    a = train_model(config, data=mnist, device="cpu")
    b = train_model(config, data=mnist, device="cpu")
    c = train_model(config.replace(seed=1), data=mnist, device="cpu")
    assert state_equal(a.model.state_dict(), b.model.state_dict())
    assert a.metrics == b.metrics
    assert not state_equal(a.model.state_dict(), c.model.state_dict())


def test_progress_events_cover_batches_and_epochs(mnist):
    events = []
    train_model(TrainConfig(train_subset=1280, epochs=2, batch_size=64), data=mnist, device="cpu",
                on_progress=events.append)
    epochs = [e for e in events if e.kind == "epoch"]
    assert [e.epoch for e in epochs] == [1, 2]
    assert all(0 <= e.val_acc <= 1 and e.val_loss > 0 for e in epochs)
    batches = [e for e in events if e.kind == "batch"]
    assert batches and batches[-1].fraction == pytest.approx(1.0)
    assert all(a.fraction <= b.fraction for a, b in zip(batches, batches[1:]))
    assert epochs[-1].eta_s == pytest.approx(0.0)


def test_training_can_be_cancelled_between_batches(mnist):
    calls = []

    def stop_after_three():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(TrainingCancelled, match="batch 3"):
        train_model(TrainConfig(train_subset=1000, epochs=1, batch_size=50), data=mnist, device="cpu",
                    should_stop=stop_after_three)


def test_a_diverging_loss_stops_with_a_clear_error(mnist, monkeypatch):
    def nan_loss(model, x, y, ctx):
        logits = model(x)
        return BatchLoss(logits.sum() * float("nan"), logits)

    monkeypatch.setitem(TRAINING_METHODS, "nan_for_test", nan_loss)
    with pytest.raises(FloatingPointError, match="Lower the learning rate"):
        train_model(TrainConfig(method="nan_for_test", train_subset=100, epochs=1), data=mnist, device="cpu")


@pytest.mark.parametrize("optimizer, schedule", [("sgd", "step"), ("sgd_momentum", "cosine"), ("adam", "constant")])
def test_every_optimizer_and_schedule_lowers_the_loss(mnist, optimizer, schedule):
    lr = 0.05 if optimizer.startswith("sgd") else 1e-3
    result = train_model(TrainConfig(optimizer=optimizer, schedule=schedule, lr=lr, train_subset=1000, epochs=2,
                                     batch_size=50),
                         data=mnist, device="cpu")
    assert result.history["train_loss"][-1] < result.history["train_loss"][0] < math.log(10) + 0.1


def test_mlp_and_fitted_baselines_train_through_the_same_entry_point(mnist):
    mlp = train_model(TrainConfig(arch="mlp", arch_kwargs={"hidden": [64]}, train_subset=2000, epochs=2), data=mnist,
                      device="cpu")
    assert mlp.metrics["test_acc"] > 0.8
    logreg = train_model(TrainConfig(arch="logreg", arch_kwargs={"max_iter": 30}, train_subset=2000), data=mnist)
    assert 0.8 < logreg.metrics["test_acc"] < 0.95


def test_evaluate_restores_the_mode(tiny_result, mnist):
    model = tiny_result.model.train()
    metrics = evaluate(model, mnist.test_x[:200], mnist.test_y[:200])
    assert model.training and 0 <= metrics["acc"] <= 1
    model.eval()


@pytest.mark.parametrize("bad", [
    {"lr": float("nan")}, {"lr": -1.0}, {"epochs": 0}, {"batch_size": 0}, {"dropout": 1.0},
    {"arch": "nope"}, {"dataset": "nope"}, {"method": "nope"}, {"optimizer": "rmsprop"}, {"train_subset": 3},
])
def test_invalid_configurations_are_rejected(bad):
    with pytest.raises(ValueError, match="Invalid training configuration"):
        TrainConfig(**bad)


def test_config_hash_is_stable_and_covers_every_field():
    base = TrainConfig()
    assert base.config_hash() == TrainConfig().config_hash() == TrainConfig.from_dict(base.to_dict()).config_hash()
    variants = [base.replace(seed=1), base.replace(lr=1e-3), base.replace(dataset="fashion_mnist"),
                base.replace(arch_kwargs={"dense": 64}), base.replace(epochs=3), base.replace(train_subset=100)]
    hashes = {v.config_hash() for v in variants} | {base.config_hash()}
    assert len(hashes) == len(variants) + 1
    with pytest.raises(ValueError, match="Unknown training configuration keys"):
        TrainConfig.from_dict({"epochz": 3})
