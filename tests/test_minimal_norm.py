"""Best-of minimal perturbations (robust_core.minimal_norm), and the DeepFool fix it came with.

The best-of keeps, per image, the smallest verified adversarial perturbation over the minimum-norm
attacks of a norm; each attack's norm is an upper bound on the true minimal distance, so on a linear
model (where the minimum is known) the best-of must sit on it from above.
"""
import json
import math

import pytest
import torch
from torch import nn

from robust_core.attacks import ATTACKS, AttackSpec, deepfool, flat_norm
from robust_core.minimal_norm import best_minimal_perturbation, main, minimal_attacks
from tests.test_fab import DUAL, five_class_linear


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tests run many tiny tensor operations: on a loaded 2-core machine two threads made them 10 to 100
    times slower than one (the linear L2 case: 25 s instead of 1.4 s), one thread costs nothing when idle."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FAST_L2 = {"fab_l2": {"n_iter": 30}, "cw_l2": {"steps": 30, "binary_search_steps": 3}, "deepfool": {"steps": 20}}


def test_the_attacks_of_each_norm_come_from_the_registry():
    assert minimal_attacks("l2") == ["fab_l2", "deepfool", "cw_l2"]
    assert minimal_attacks("l1") == ["fab_l1", "ead"]
    assert minimal_attacks("linf") == ["fab", "deepfool_linf"]
    for norm in ("l2", "l1", "linf"):
        assert all(ATTACKS[a].kind == "minimal" and ATTACKS[a].norm == norm for a in minimal_attacks(norm))


@pytest.mark.parametrize("norm", ["l2", "l1", "linf"])
def test_on_a_linear_model_the_best_of_is_the_analytic_distance(norm):
    model, x, y, gap, normal = five_class_linear()
    distance = gap.abs() / normal.norm(p=DUAL[norm], dim=2)
    distance[torch.arange(len(y)), y] = math.inf
    nearest = distance.min(1).values  # the class region is an intersection of half-spaces: exact
    result = best_minimal_perturbation(model, x, y, norm=norm)
    assert torch.isfinite(result.norms).all()
    ratio = result.norms / nearest
    # Never below the true minimum (it is the minimum), and FAB's bound is within 1.5% of it.
    assert float(ratio.min()) >= 1 - 1e-4 and float(ratio.max()) <= 1.015, (float(ratio.min()), float(ratio.max()))
    summary = result.summary()
    assert summary["best_of"]["success"] == 1.0 and summary["attacked"] == len(x)
    assert set(summary["attacks"]) == set(minimal_attacks(norm))


def _check_result(model, x, y, result, norm):
    """Best-of <= each attack per image; every finite best-of candidate is a verified adversarial example."""
    for name, values in result.per_attack.items():
        assert (result.norms <= values).all(), name
    finite = torch.isfinite(result.norms) & (result.norms > 0)
    with torch.no_grad():
        pred = model(result.x_adv).argmax(1)
    assert (pred[finite] != y[finite]).all()
    assert float(result.x_adv.min()) >= 0.0 and float(result.x_adv.max()) <= 1.0
    assert torch.allclose(flat_norm(result.x_adv - x, norm)[finite], result.norms[finite], atol=1e-6)
    unbroken = ~torch.isfinite(result.norms)
    assert torch.equal(result.x_adv[unbroken], x[unbroken])
    assert all(result.found_by[i] in result.attacks for i in finite.nonzero().flatten().tolist())
    for i in finite.nonzero().flatten().tolist():  # found_by names the attack that reached the best-of
        assert result.per_attack[result.found_by[i]][i] == result.norms[i]


def test_best_of_is_at_most_every_attack_and_truly_adversarial_on_a_cnn(small_cnn, mnist):
    x, y = mnist.test_x[:16], mnist.test_y[:16]
    small_cnn.train()
    for p in small_cnn.parameters():
        p.grad = None
    result = best_minimal_perturbation(small_cnn, x, y, norm="l2", attack_kwargs=FAST_L2, batch_size=7)
    assert small_cnn.training  # given back in the mode it came in
    assert all(p.grad is None for p in small_cnn.parameters())
    small_cnn.eval()
    _check_result(small_cnn, x, y, result, "l2")
    assert not result.norms.requires_grad and not result.x_adv.requires_grad
    assert torch.isfinite(result.norms).float().mean() >= 0.9
    summary = result.summary()
    # The best-of median is no larger than any attack's median over the same images it broke.
    assert summary["best_of"]["median"] <= min(s["median"] for s in summary["attacks"].values()) + 1e-6
    json.dumps(summary)  # JSON-ready


def test_an_image_misclassified_without_attack_gets_zero():
    model, x, y, _, _ = five_class_linear(n=12)
    wrong = y.clone()
    wrong[:3] = (y[:3] + 1) % 5
    result = best_minimal_perturbation(model, x, wrong, norm="l2", attack_kwargs=FAST_L2)
    assert (result.norms[:3] == 0).all() and result.found_by[:3] == ["clean"] * 3
    assert torch.equal(result.x_adv[:3], x[:3])
    assert (result.norms[3:] > 0).all() and torch.isfinite(result.norms[3:]).all()
    for values in result.per_attack.values():
        assert (values[:3] == 0).all()
    summary = result.summary()
    assert summary["attacked"] == 9 and summary["best_of"]["success"] == 1.0
    _check_result(model, x, wrong, result, "l2")


def test_candidates_are_verified_not_trusted(monkeypatch):
    """An attack that returns a tiny perturbation that is not adversarial, or leaves [0, 1], wins nothing."""
    model, x, y, _, _ = five_class_linear(n=10)

    def liar(model, x, y, *, eps=None, seed=0, **_):
        out = x + 1e-3
        out[:5] = x[:5] + 1e-4  # not adversarial
        out[5:] = x[5:] - 2.0  # far out of the box: argmax may change, but it is no image
        return out

    monkeypatch.setitem(ATTACKS, "liar", AttackSpec("liar", "Liar (L2)", liar, "l2", "-", "minimal", False))
    result = best_minimal_perturbation(model, x, y, norm="l2", attacks=["liar", "deepfool"])
    assert torch.isinf(result.per_attack["liar"]).all()
    assert result.found_by == ["deepfool"] * len(x)
    assert result.summary()["attacks"]["liar"]["success"] == 0.0


def test_images_no_attack_breaks_get_inf():
    model, x, y, _, _ = five_class_linear(n=6)
    result = best_minimal_perturbation(model, x, y, norm="l2", attacks=["deepfool"],
                                       attack_kwargs={"deepfool": {"steps": 0}})
    assert torch.isinf(result.norms).all() and result.found_by == [""] * 6
    assert torch.equal(result.x_adv, x)
    summary = result.summary()
    assert summary["best_of"] == {"success": 0.0, "median": None}


def test_bad_requests_are_refused_clearly():
    model, x, y, _, _ = five_class_linear(n=4)
    for kwargs, message in [({"norm": "l0"}, "norm"), ({"attacks": ["pgd"]}, "not a minimum-norm l2"),
                            ({"attacks": ["fab_l1"]}, "not a minimum-norm l2"),
                            ({"attacks": ["nope"]}, "unknown attack"),
                            ({"attacks": []}, "at least one"), ({"attacks": ["deepfool", "deepfool"]}, "twice"),
                            ({"attack_kwargs": {"cw_l2": {}}, "attacks": ["deepfool"]}, "not run"),
                            ({"attack_kwargs": {"deepfool": {"eps": 1.0}}}, "eps"), ({"batch_size": 0}, "batch_size")]:
        with pytest.raises(ValueError, match=message):
            best_minimal_perturbation(model, x, y, **kwargs)


class FlatTrap(nn.Module):
    """Two pixels, class 1 where g(p + q) > 0: g rises with slope 1 from s = p + q = 0 (g = -0.5) to s = 0.8,
    falls steeply to s = 0.9 and is almost flat (slope -0.002) on to s = 2. From (0, 1) the linearised boundary
    is 70 away, down the diagonal: the step is clipped to (0, 0), where one step up the diagonal crosses."""

    def forward(self, x):
        s = x.flatten(1).sum(1)
        g = s - 0.5 - 5.98 * torch.relu(s - 0.8) + 4.978 * torch.relu(s - 0.9)
        return torch.stack([torch.zeros_like(g), g], 1)


def test_deepfool_steps_from_the_clipped_point():
    """DeepFool must step from the clipped point, not sum the unclipped steps and clip x + sum. Here the first
    step's sum would be (-50, -50); every later step (+0.25 per pixel) would first have to unwind that excess, so
    the image would stay at (0, 0) for about 200 steps and DeepFool would give up at its 50. On the PGD-AT MNIST
    CNN that pile-up leaves 25% of the images unbroken, against 4.5% stepping from the clipped point. Stepping from
    the clipped point, the second step crosses."""
    model = FlatTrap()
    x = torch.tensor([[[[0.0, 1.0]]]])
    y = torch.tensor([0])
    assert model(x).argmax(1).item() == 0
    x_adv = deepfool(model, x, y, steps=2)
    assert model(x_adv).argmax(1).item() == 1
    assert torch.allclose(x_adv.flatten(), torch.full((2,), 1.02 * (0.5 / 2 + 1e-4 / math.sqrt(2))), atol=1e-5)
    # The best-of verifies and keeps it.
    result = best_minimal_perturbation(model, x, y, norm="l2", attacks=["deepfool"])
    assert result.found_by == ["deepfool"]
    assert math.isclose(float(result.norms[0]), float(flat_norm(x_adv - x, "l2")[0]))


def test_the_command_prints_each_attack_and_the_best_of(two_models, tmp_path, capsys):
    first, _ = two_models
    out = tmp_path / "l2.json"
    args = ["--model", first[:8], "--norm", "l2", "--n", "6", "--attack", "deepfool", "--attack", "fab_l2",
            "--json", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "first 6 test images" in text and "deepfool" in text and "fab_l2" in text and "best-of" in text
    saved = json.loads(out.read_text())
    entry = saved["models"][first]
    assert saved["norm"] == "l2" and saved["units"] == "pixel scale [0, 1]" and len(entry["best_of_norms"]) == 6
    assert set(entry["attacks"]) == {"deepfool", "fab_l2"} and 0 <= entry["best_of"]["success"] <= 1
    assert main(["--model", first, "--n", "4", "--attack", "deepfool", "--correct-only"]) == 0
    assert "first 4 correctly classified" in capsys.readouterr().out


def test_the_command_refuses_bad_input_with_exit_2(two_models, capsys):
    first, _ = two_models
    assert main(["--model", "ffff"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["--model", first, "--attack", "pgd"]) == 2
    assert "not a minimum-norm l2 attack" in capsys.readouterr().err
    assert main(["--model", first, "--norm", "l1", "--attack", "deepfool"]) == 2
    assert "error: " in capsys.readouterr().err
    assert main(["--model", first, "--n", "0"]) == 2
    assert "--n must be" in capsys.readouterr().err
