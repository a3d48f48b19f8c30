"""AutoAttack's protocol, ours: the chain is at least as strong as each of its stages, runs later stages only on what
is still robust, and states its parameters; APGD's step-size schedule and Square's window schedule as the
reference runs them."""
import pytest
import torch

from robust_core.attacks import get_attack
from robust_core.tensors import predict
from robust_core.attacks.autoattack import VERSIONS, run_autoattack
from robust_core.attacks.gradient import _checkpoints, _halve_at_checkpoint
from robust_core.attacks.square import _p_schedule

EPS = 0.08  # small enough that the small CNN keeps some points, so every stage has work


@pytest.fixture(scope="module")
def points(mnist):
    return mnist.test_x[:24], mnist.test_y[:24]  # 24: Square's 5,000 queries on the survivors dominate the time


def test_the_standard_chain_is_no_weaker_than_any_of_its_stages_run_alone(small_cnn, points):
    x, y = points
    report = run_autoattack(small_cnn, x, y, eps=EPS, version="standard", seed=0)
    assert [s.attack for s in report.stages] == ["apgd_ce", "apgd_t", "fab_t", "square"]
    # Later stages only see what the earlier ones left robust; robust accuracy never rises along the chain.
    for before, after in zip(report.stages, report.stages[1:]):
        assert after.attacked == round(before.robust_accuracy * len(x))
        assert after.robust_accuracy <= before.robust_accuracy
    assert report.stages[0].attacked == round(report.clean_accuracy * len(x))
    assert report.robust_accuracy == report.stages[-1].robust_accuracy <= report.clean_accuracy
    # The gradient stages alone, on every point (one point of slack: the stages' random starts see other batches).
    # Not Square alone: the chain ends with that very Square on every survivor (5,000 queries each, the test's
    # costliest part), so it adds no check the ordering above does not make.
    alone = {
        "apgd_ce": get_attack("apgd_ce")(small_cnn, x, y, eps=EPS, seed=0),
        "apgd_t": get_attack("apgd_t")(small_cnn, x, y, eps=EPS, seed=0),
    }
    for name, x_adv in alone.items():
        accuracy = float((predict(small_cnn, x_adv) == y).float().mean())
        assert report.robust_accuracy <= accuracy + 1 / len(x), (name, report.robust_accuracy, accuracy)
    # The examples it returns are what it counted: inside the ball, misclassified exactly where it says broken.
    assert float((report.x_adv - x).abs().max()) <= EPS + 1e-6
    assert torch.equal(predict(small_cnn, report.x_adv) == y, report.robust)
    assert "apgd_t(steps=100, n_target_classes=9" in report.protocol() and "square(n_queries=5000" in report.protocol()


def test_the_registry_entries_keep_the_contract_and_refuse_targets(small_cnn, points):
    x, y = points
    x_adv = get_attack("autoattack_fast")(small_cnn, x[:8], y[:8], eps=EPS)
    assert x_adv.shape == x[:8].shape and float((x_adv - x[:8]).abs().max()) <= EPS + 1e-6
    with pytest.raises(ValueError, match="untargeted"):
        get_attack("autoattack_standard")(small_cnn, x[:8], y[:8], eps=EPS, targeted=True, target=3)
    with pytest.raises(ValueError, match="version"):
        run_autoattack(small_cnn, x, y, eps=EPS, version="plus")
    assert set(VERSIONS) == {"standard", "fast"}


def test_apgd_checks_its_step_size_at_the_papers_checkpoints():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06): 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99.
    assert _checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    # A budget too short for 6% to be a whole step still checks once a step after the first window.
    assert _checkpoints(10) == list(range(2, 11))


def test_apgd_halves_a_step_on_too_few_rises_or_on_a_best_loss_standing_still_after_no_halving():
    span, rho = 16, 0.75  # the third window of 100 steps: halve at 12 rises or fewer
    raised = torch.tensor([12.0, 13.0, 16.0, 16.0, 16.0])
    halved_last = torch.tensor([True, True, True, False, False])
    best_improved = torch.tensor([True, True, False, False, True])
    halve = _halve_at_checkpoint(raised, span, rho, halved_last, best_improved)
    # 12 <= 0.75 * 16 halves; 13 does not; a best loss standing still halves only a step not halved last time
    # (the third example: ours halved it, from a test that compared the step size with itself).
    assert halve.tolist() == [True, False, False, True, False]


def test_autoattacks_square_keeps_its_window_schedule_in_iterations():
    params = dict(VERSIONS["standard"])["square"]
    assert params["rescale_schedule"] is False and params["n_queries"] == 5000
    # At iteration 4,500 of 5,000: p_init / 128 as AutoAttack runs it, p_init / 512 rescaled to the budget.
    assert _p_schedule(0.8, 4500, 5000, rescale=False) == 0.8 / 128
    assert _p_schedule(0.8, 4500, 5000, rescale=True) == 0.8 / 512
    assert _p_schedule(0.8, 10, 5000, rescale=False) == 0.8 and _p_schedule(0.8, 11, 5000, rescale=False) == 0.4
