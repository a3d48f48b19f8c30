"""Class visualisation by gradient ascent, and the k-NN morph."""
import pytest
import torch

from robust_core.classviz import OBJECTIVES, knn_morph, visualize


@pytest.mark.parametrize("loss", sorted(OBJECTIVES))
def test_target_probability_rises_within_ten_steps(small_cnn, loss):
    r = visualize(small_cnn, 3, start="gaussian", steps=10, lr=0.5, loss=loss, threshold=None, seed=1)
    p = r.probabilities[:, 0, 3]
    assert p[-1] > p[0] + 0.05, p
    assert r.final.min() >= 0 and r.final.max() <= 1


def test_the_naive_objective_stalls_on_a_saturated_start(small_cnn, mnist):
    """Seed §3.1: from a confidently classified 7, -p_3 has a vanishing gradient and barely moves."""
    seven = mnist.test_x[0]
    with torch.no_grad():
        assert small_cnn(seven[None]).softmax(1)[0, 7] > 0.99
    naive = visualize(small_cnn, 3, start="image", image=seven, steps=10, lr=0.5, loss="prob", normalize_grad=False,
                      threshold=None)
    fixed = visualize(small_cnn, 3, start="image", image=seven, steps=10, lr=0.5, loss="log_prob", threshold=None)
    assert (naive.final - seven).abs().max() < 1e-3
    assert fixed.probabilities[-1, 0, 3] > 100 * naive.probabilities[-1, 0, 3]


def test_budget_is_respected_and_marks_an_adversarial_example(small_cnn, mnist):
    seven = mnist.test_x[0]
    for norm, eps in (("linf", 0.1), ("l2", 1.5)):
        r = visualize(small_cnn, 3, start="image", image=seven, steps=30, lr=0.2, budget=(norm, eps), threshold=None)
        delta = (r.final[0] - seven).flatten()
        size = delta.abs().max() if norm == "linf" else delta.norm()
        assert size <= eps + 1e-5 and r.adversarial


def test_batched_targets_equal_individual_runs(small_cnn):
    batch = visualize(small_cnn, [1, 4, 8], start="uniform", steps=15, lr=0.3, threshold=None, seed=5)
    for i, target in enumerate([1, 4, 8]):
        # The same start noise: draw three, keep the i-th.
        single = visualize(small_cnn, target, start="image", image=batch.frames[0, i], steps=15, lr=0.3, threshold=None)
        assert torch.allclose(batch.final[i], single.final[0], atol=1e-5)


def test_threshold_stops_an_image_and_mode_is_restored(small_cnn):
    small_cnn.train()
    r = visualize(small_cnn, [0, 1], start="zeros", steps=100, lr=0.5, threshold=0.9)
    assert small_cnn.training
    small_cnn.eval()
    assert all(reason == "threshold" for reason in r.stop_reason)
    assert (r.steps_run < 100).all() and (r.final_probabilities[[0, 1], [0, 1]] >= 0.9).all()


def test_knn_morph_raises_the_pseudo_probability_on_a_toy_set():
    torch.manual_seed(0)
    # Two clusters of 4x4 images: class 0 dark, class 1 bright.
    train_x = torch.cat([torch.rand(50, 1, 4, 4) * 0.2, 0.8 + torch.rand(50, 1, 4, 4) * 0.2])
    train_y = torch.cat([torch.zeros(50, dtype=torch.long), torch.ones(50, dtype=torch.long)])
    r = knn_morph(train_x, train_y, train_x[0], 1, k=5, lr=0.3, mask_share=0.5, steps=100)
    assert r.pseudo_probability[0] == 0.0 and r.pseudo_probability[-1] >= 0.6
    assert r.final.min() >= 0 and r.final.max() <= 1
