"""The Attack page's library side: honest progress of the minimal-eps search, and the slider gallery."""
import time

import numpy as np
import pytest
import torch
from torch import nn

from robust_core.evaluation import minimal_eps
from robust_core.gallery import gallery_frames


class Counting(nn.Module):
    """The model, counting the images of every forward pass: the work an attack really does."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.images = 0
        self.train(model.training)

    def forward(self, x):
        self.images += len(x)
        return self.model(x)


def progress_trace(model, x, y, **kwargs):
    """Run minimal_eps and record (images processed so far, wall time, reported fraction) at each report."""
    counted = Counting(model)
    trace = []
    start = time.perf_counter()
    values = minimal_eps(counted, x, y,
                         on_progress=lambda f: trace.append((counted.images, time.perf_counter() - start, f)),
                         **kwargs)
    return values, trace, counted.images, time.perf_counter() - start


def test_minimal_eps_progress_follows_the_work_and_the_clock_and_never_runs_ahead(small_cnn, mnist):
    # PGD on a standard model up to eps = 1: at eps_max and the first brackets every image breaks within
    # a step, so those calls are cheap; from eps ~ 0.1 down, most images survive their calls and run every
    # step. Counting bisection rounds would say 3/7 done when a fifth of the work is, and the ETA would run short.
    x, y = mnist.test_x[:48], mnist.test_y[:48]
    values, trace, total, seconds = progress_trace(small_cnn, x, y, attack="pgd", eps_max=1.0, steps=20,
                                                   bisection_steps=6)
    assert (values > 0.1).float().mean() > 0.5  # most images survive the calls below 0.1: the costly part
    fractions = np.array([f for _, _, f in trace])
    assert (np.diff(fractions) >= 0).all(), "progress went backwards"
    assert fractions[-1] == 1.0 and fractions.min() >= 0
    work = np.array([done for done, _, _ in trace]) / total
    # Never ahead of the work actually done (the worst case of what is left bounds it) ...
    ahead = float((fractions - work).max())
    assert ahead < 0.05, f"reported {ahead:.0%} more than the share of work done"
    # ... reported often enough to follow it, not once per bisection round ...
    assert np.diff(np.concatenate([[0.0], work])).max() < 0.1
    assert np.corrcoef(fractions, work)[0, 1] > 0.95
    # ... and so in step with the clock (loose: other processes share the CPU).
    times = np.array([t for _, t, _ in trace]) / seconds
    assert np.corrcoef(fractions, times)[0, 1] > 0.8


def test_minimal_eps_reports_progress_for_every_kind_of_attack(small_cnn, mnist):
    x, y = mnist.test_x[:20], mnist.test_y[:20]
    for attack, kwargs in [("fgsm", {"grid_points": 20}), ("deepfool", {}), ("square", {"n_queries": 30}),
                           ("apgd_ce", {"steps": 10}), ("pgd", {"steps": 5, "batch_size": 8})]:
        _, trace, _, _ = progress_trace(small_cnn, x, y, attack=attack, eps_max=0.3, bisection_steps=3, **kwargs)
        fractions = [f for _, _, f in trace]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0, attack
    was_training = small_cnn.training
    small_cnn.train()
    try:
        minimal_eps(small_cnn, x[:4], y[:4], attack="pgd", eps_max=0.3, steps=3, bisection_steps=2,
                    on_progress=lambda f: None)
        assert small_cnn.training  # the counting wrapper gives the model back in the mode it came in
    finally:
        small_cnn.train(was_training)


# ---- the slider gallery -------------------------------------------------------------------------------------------
EPS = [round(0.3 * i / 15, 6) for i in range(16)]


def test_gallery_frames_grow_each_perturbation_to_its_minimal_eps_with_one_attack_per_image(small_cnn, mnist):
    x, y = mnist.test_x[:8], mnist.test_y[:8]
    cached = minimal_eps(small_cnn, x, y, attack="pgd", eps_max=EPS[-1], steps=10, bisection_steps=5)
    counted = Counting(small_cnn).eval()
    reports = []
    g = gallery_frames(counted, x, y, attack="pgd", eps_frames=EPS, min_eps=cached, steps=10, eps_max=EPS[-1],
                       on_progress=reports.append)
    adv = g["adversarial"]
    assert adv.shape == (len(EPS), 8, 1, 28, 28) and g["predictions"].shape == g["confidences"].shape == (len(EPS), 8)
    assert torch.equal(adv[0], x)  # eps = 0: the clean images
    assert adv.min() >= 0 and adv.max() <= 1
    # Every frame lies within its eps in the attack's norm ...
    linf = (adv - x[None]).flatten(2).abs().amax(2)
    assert (linf <= torch.tensor(EPS)[:, None] + 1e-6).all()
    # ... the predictions are the model's own on each frame, and an image is misread from its minimal eps on.
    with torch.no_grad():
        assert torch.equal(g["predictions"][5], small_cnn(adv[5]).argmax(1))
    broken = torch.isfinite(g["min_eps"]) & (g["min_eps"] > 0)
    assert broken.sum() >= 4
    for k in broken.nonzero().flatten().tolist():
        from_frame = EPS.index(round(float(g["min_eps"][k]), 6))
        assert (g["predictions"][from_frame:, k] != y[k]).all() and (g["predictions"][0, k] == y[k])
    # One attack call per image (or per shared value), not one per frame: far less work than 15 attacks.
    per_attack_call = 8 * (10 + 3)
    assert counted.images < 3 * per_attack_call + 2 * len(EPS) * 8
    assert reports == sorted(reports) and reports[-1] == 1.0


def test_gallery_frames_search_the_minimal_eps_themselves_when_not_given(small_cnn, mnist):
    x, y = mnist.test_x[8:12], mnist.test_y[8:12]
    reports = []
    g = gallery_frames(small_cnn, x, y, attack="pgd", eps_frames=EPS, steps=5, on_progress=reports.append)
    assert reports[-1] == 1.0 and reports == sorted(reports) and len(reports) > 3
    wrong_at_end = g["predictions"][-1] != y
    assert torch.equal(wrong_at_end, torch.isfinite(g["min_eps"]))


def test_fgsm_gallery_is_exact_and_minimal_attacks_scale_their_perturbation(small_cnn, mnist):
    from robust_core.attacks import ATTACKS

    x, y = mnist.test_x[:4], mnist.test_y[:4]
    g = gallery_frames(small_cnn, x, y, attack="fgsm", eps_frames=EPS)
    for i in (3, 9, 15):
        expected = ATTACKS["fgsm"](small_cnn, x, y, eps=EPS[i])
        ok = small_cnn(x).argmax(1) == y
        assert torch.allclose(g["adversarial"][i][ok], expected[ok], atol=1e-6)
    eps_l2 = [0.25 * i for i in range(9)]
    d = gallery_frames(small_cnn, x, y, attack="deepfool", eps_frames=eps_l2)
    l2 = (d["adversarial"] - x[None]).flatten(2).norm(dim=2)
    assert (l2 <= torch.tensor(eps_l2)[:, None] + 1e-4).all()


def test_gallery_frames_can_be_cancelled_and_give_the_model_back_as_found(small_cnn, mnist):
    x, y = mnist.test_x[:8], mnist.test_y[:8]

    class Stop(Exception):
        pass

    def stop_soon(fraction):
        if fraction > 0.1:
            raise Stop

    was_training = small_cnn.training
    small_cnn.train()
    try:
        with pytest.raises(Stop):
            gallery_frames(small_cnn, x, y, attack="pgd", eps_frames=EPS, steps=5, on_progress=stop_soon)
        assert small_cnn.training
    finally:
        small_cnn.train(was_training)
    with pytest.raises(ValueError, match="increasing"):
        gallery_frames(small_cnn, x, y, attack="pgd", eps_frames=[0.2, 0.1])


def test_a_perturbation_strip_is_one_byte_a_pixel_in_the_diverging_colours():
    """Perturbation strips travel in every frame of the ε-slider figure: a palette image (one byte a pixel), whose
    colours are the blue-white-red map to within one of its 255 levels, and whose gaps between digits are white."""
    import numpy as np

    from robust_core.plots import DIVERGING_LEVELS, GALLERY_GAP, _rdbu, image_strip

    values = np.linspace(0, 1, 3 * 28 * 28, dtype=np.float32).reshape(3, 28, 28)
    strip = image_strip(values, diverging=True)
    assert strip.mode == "P" and strip.size == (3 * 28 + 2 * GALLERY_GAP, 28)
    rgb = np.asarray(strip.convert("RGB")).astype(int)
    for c in range(3):
        shown = rgb[:, c * (28 + GALLERY_GAP): c * (28 + GALLERY_GAP) + 28]
        exact = _rdbu(values[c]).astype(int)
        step = np.abs(_rdbu(np.array([0.0])).astype(int) - _rdbu(np.array([1.0 / (DIVERGING_LEVELS - 1)]))).max()
        assert np.abs(shown - exact).max() <= step  # one level of the map at most
    assert (rgb[:, 28: 28 + GALLERY_GAP] == 255).all()
