import pytest
import torch

from robust_core.models import (
    ACTIVATIONS,
    ARCHITECTURES,
    build_model,
    parameter_count,
    predict_proba,
)


def test_seed_cnn_has_exactly_the_seed_parameter_count():
    # conv 32@3x3 + conv 64@3x3 + dense 128 + dense 10: 320 + 18,496 + 204,928 + 1,290
    assert parameter_count(build_model("cnn", "mnist")) == 225_034


@pytest.mark.parametrize("arch, expected", [
    ("cnn_no_conv2", 320 + (13 * 13 * 32 + 1) * 128 + 1290),
    ("cnn_no_pool1", 320 + 18496 + (12 * 12 * 64 + 1) * 128 + 1290),
    ("cnn_dense64", 320 + 18496 + 1601 * 64 + 65 * 10),
    ("cnn_small", 160 + 4640 + (5 * 5 * 32 + 1) * 128 + 1290),
    ("cnn_no_dense", 320 + 18496 + 1601 * 10),
])
def test_ablation_variants_have_their_architecture(arch, expected):
    model = build_model(arch, "mnist")
    assert parameter_count(model) == expected
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_activations_and_dropout(activation):
    model = build_model("mlp", "fashion_mnist", hidden=[64, 32], activation=activation, dropout=0.2)
    assert parameter_count(model) == (784 * 64 + 64) + (64 * 32 + 32) + (32 * 10 + 10)
    assert model(torch.rand(4, 1, 28, 28)).shape == (4, 10)
    assert any(isinstance(m, torch.nn.Dropout) for m in model.modules())


def test_normalisation_lives_inside_the_model():
    model = build_model("cnn", "mnist").eval()
    x = torch.rand(2, 1, 28, 28)
    expected = model.blocks((x - 0.1307) / 0.3081)
    assert torch.allclose(model(x), expected, atol=1e-6)
    assert "normalize.mean" in model.state_dict()


def test_features_match_forward_and_include_every_hidden_block():
    model = build_model("cnn", "mnist").eval()
    x = torch.rand(2, 1, 28, 28)
    logits, features = model.forward_with_features(x)
    assert torch.allclose(logits, model(x))
    assert len(features) == 1 + len(model.feature_block_names) == 4
    assert features[1].shape == (2, 32, 13, 13) and features[3].shape == (2, 128)


def test_cnn_adapts_to_colour_images():
    model = build_model("cnn", "cifar10")
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_predict_proba_is_a_distribution_and_keeps_the_mode():
    model = build_model("cnn", "mnist").train()
    p = predict_proba(model, torch.rand(5, 1, 28, 28))
    assert p.shape == (5, 10) and torch.allclose(p.sum(1), torch.ones(5)) and model.training


def test_unknown_architecture_names_the_choices():
    with pytest.raises(ValueError, match="choose one of"):
        build_model("resnet9000", "mnist")
    with pytest.raises(ValueError, match="Unknown activation"):
        build_model("mlp", "mnist", activation="swishy")


def test_baselines_expose_predict_proba(mnist):
    x, y = mnist.train_x[:600], mnist.train_y[:600]
    knn = build_model("knn", "mnist").fit(x, y)
    p = predict_proba(knn, mnist.test_x[:50])
    assert p.shape == (50, 10)
    # k = 3 votes: each probability is a multiple of 1/3
    assert torch.allclose(p * 3, (p * 3).round(), atol=1e-6)
    logreg = build_model("logreg", "mnist", max_iter=50).fit(x, y)
    q = predict_proba(logreg, mnist.test_x[:50])
    assert torch.allclose(q.sum(1), torch.ones(50), atol=1e-5)
    assert (q.argmax(1) == mnist.test_y[:50]).float().mean() > 0.7


def test_registry_lists_kinds():
    assert {a.kind for a in ARCHITECTURES.values()} == {"torch", "fitted"}
