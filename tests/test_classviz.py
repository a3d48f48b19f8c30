"""Class visualisation by gradient ascent, and the k-NN morph."""
import pytest
import torch

from robust_core.classviz import OBJECTIVES, knn_morph, visualize
from tests.test_pages import finish_jobs


@pytest.mark.parametrize("loss", sorted(OBJECTIVES))
def test_target_probability_rises_within_ten_steps(small_cnn, loss):
    r = visualize(small_cnn, 3, start="gaussian", steps=10, lr=0.5, loss=loss, threshold=None, seed=1)
    p = r.probabilities[:, 0, 3]
    assert p[-1] > p[0] + 0.05, p
    assert r.final.min() >= 0 and r.final.max() <= 1


def test_the_naive_objective_stalls_on_a_saturated_start(small_cnn, mnist):
    """From a confidently classified 7, -p_3 has a vanishing gradient (the softmax saturates) and barely moves."""
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


@pytest.mark.parametrize("jitter_pixels", [0, 2])
def test_recorded_probabilities_are_those_of_the_recorded_frames(small_cnn, jitter_pixels):
    """The loop reuses the gradient's forward pass for the probabilities (no jitter): they must still
    be the probabilities of the frame they are stored with, and the threshold must act on them."""
    r = visualize(small_cnn, [2, 6], start="uniform", steps=12, lr=0.3, jitter_pixels=jitter_pixels, threshold=None,
                  seed=3)
    with torch.no_grad():
        fresh = torch.stack([small_cnn(f).softmax(1) for f in r.frames])
    assert r.frames.shape[0] == r.probabilities.shape[0] == 13 and r.recorded_steps == list(range(13))
    assert torch.allclose(r.probabilities, fresh, atol=1e-5)


def test_channels_last_copy_computes_the_same_and_leaves_the_model_alone(small_cnn):
    from robust_core.device import channels_last_copy

    copy = channels_last_copy(small_cnn)
    assert copy is not small_cnn and all(p.is_contiguous() for p in small_cnn.parameters())
    x = torch.rand(7, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(copy(x), small_cnn(x), atol=1e-4)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    assert channels_last_copy(mlp) is mlp  # nothing to gain without conv weights


def test_exports_have_the_promised_frames(small_cnn):
    import io

    from PIL import Image

    from robust_core.classviz.export import finals_png, frame_indices, gif, strip_png
    from robust_core.plots import GALLERY_GAP

    r = visualize(small_cnn, [0, 5, 9], start="zeros", steps=30, lr=0.3, threshold=None)
    assert frame_indices(31, 11) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30] and frame_indices(3, 11) == [0, 1, 2]
    strip = Image.open(io.BytesIO(strip_png(r, image=1, frames=11, scale=2)))
    assert strip.size == (2 * (11 * 28 + 10 * GALLERY_GAP), 2 * 28)
    # The strip's last cell is the final image (grey levels up to rounding), its first the black start.
    pixels = torch.tensor(list(strip.convert("L").getdata()), dtype=torch.float32).view(56, -1)[::2, ::2] / 255
    assert torch.allclose(pixels[:, -28:], r.final[1, 0], atol=1 / 255 + 1e-6) and pixels[:, :28].max() == 0
    animation = Image.open(io.BytesIO(gif(r, image=2, scale=1)))
    assert animation.n_frames >= 2 and animation.size == (28, 28)
    assert Image.open(io.BytesIO(finals_png(r, scale=1))).size == (3 * 28 + 2 * GALLERY_GAP, 28)
    with pytest.raises(ValueError, match="image must be"):
        strip_png(r, image=3)


# ---- the lecture moment: a robust model morphs a 4 into a 9 that others read as a 9 ----
def drawn_four():
    """A 4 drawn the way the page's canvas returns it: white 20-px strokes on a 280 x 280 black RGBA canvas."""
    import numpy as np
    from PIL import Image, ImageDraw

    from robust_core.digits import mnist_style

    canvas = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    pen = ImageDraw.Draw(canvas)
    pen.line([(90, 40), (70, 160), (190, 160)], fill=(255, 255, 255, 255), width=20, joint="curve")
    pen.line([(170, 60), (165, 250)], fill=(255, 255, 255, 255), width=20)
    return mnist_style(np.array(canvas))[0]


@pytest.fixture(scope="module")
def shipped_mnist(tmp_path_factory):
    """The shipped standard and PGD-AT MNIST CNNs, loaded from assets/models."""
    from robust_core.shipped import install_shipped
    from robust_core.store import ModelStore

    store = ModelStore(tmp_path_factory.mktemp("shipped-store"))
    install_shipped(store)
    by_method = {e.meta["config"]["method"]: e.model_id for e in store.list("mnist")
                 if e.meta["config"]["arch"] == "cnn"}
    return {m: store.load(by_method[m]) for m in ("standard", "pgd_at")}


def knn_reading(mnist, images, k=3):
    """The class the k-NN baseline (k nearest of the 55,000 training images, majority) reads in each image:
    a classifier nobody optimised against, so it measures what the picture looks like."""
    nearest = torch.cdist(images.flatten(1), mnist.train_x.flatten(1)).topk(k, largest=False).indices
    return torch.mode(mnist.train_y[nearest], dim=1).values


@pytest.mark.parametrize("start", ["first test 4", "drawn 4"])
def test_the_robust_model_morphs_a_4_into_a_9_that_the_others_read_as_9(shipped_mnist, mnist, start):
    from robust_core.classviz import RECIPES, dark_gradient_share

    four = mnist.test_x[int((mnist.test_y == 4).nonzero()[0])] if start == "first test 4" else drawn_four()
    robust, standard = shipped_mnist["pgd_at"], shipped_mnist["standard"]
    with torch.no_grad():
        assert (robust(four[None]).argmax() == 4 and standard(four[None]).argmax() == 4
                and knn_reading(mnist, four[None]) == 4)
    # Why the plain "seed" recipe fails: the robust model thresholds its input, its dark pixels get no gradient.
    assert dark_gradient_share(robust, four, 9) < 1e-4 < 0.1 < dark_gradient_share(standard, four, 9)
    seed = visualize(robust, 9, start="image", image=four, threshold=0.99, **RECIPES["seed"])
    assert seed.final_probabilities[0, 9] < 0.5
    morph = visualize(robust, 9, start="image", image=four, threshold=0.99, **RECIPES["smoothed"])
    assert morph.final_probabilities[0, 9] >= 0.9
    with torch.no_grad():
        assert standard(morph.final).argmax() == 9  # a model it was not optimised against reads a 9
    assert knn_reading(mnist, morph.final) == 9  # and so does the k-NN baseline: it looks like a 9
    # The standard model's morph with the plain "seed" recipe fools only itself.
    fooled = visualize(standard, 9, start="image", image=four, threshold=0.99, **RECIPES["seed"])
    assert fooled.final_probabilities[0, 9] >= 0.9
    with torch.no_grad():
        assert robust(fooled.final).argmax() != 9
    assert knn_reading(mnist, fooled.final) != 9


def test_noise_smoothing_and_sign_steps(small_cnn):
    from robust_core.classviz import gaussian_noise

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 28, 28)
    noisy = gaussian_noise(x, 0.3, 5, g)
    # The copies of one image are adjacent.
    assert noisy.shape == (15, 1, 28, 28) and abs(float((noisy[5:10] - x[1]).mean())) < 0.03
    assert abs(float((noisy[:5] - x[0]).std()) - 0.3) < 0.03
    # Sign steps move every pixel by exactly lr per step (until clipping).
    r = visualize(small_cnn, 3, start="image", image=torch.full((1, 28, 28), 0.5), steps=1, lr=0.01, step_norm="linf",
                  threshold=None)
    moved = (r.final - 0.5).abs()
    assert torch.allclose(moved[moved > 0], torch.tensor(0.01), atol=1e-6) and (moved > 0).float().mean() > 0.5
    # Noise draws are seeded: two runs agree, another seed differs.
    a, b, c = (visualize(small_cnn, 3, start="zeros", steps=5, lr=0.01, step_norm="linf", noise_sigma=0.3,
                         noise_samples=4, threshold=None, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.final, b.final) and not torch.equal(a.final, c.final)
    with pytest.raises(ValueError, match="step_norm"):
        visualize(small_cnn, 3, step_norm="l3")


def test_the_page_defaults_morph_the_first_test_4_into_a_9_on_the_shipped_robust_model(monkeypatch, isolated_store):
    """On the page: its defaults, one click, the shipped PGD-AT CNN; the k-NN baseline reads a 9."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from robust_core.store import ModelStore

    monkeypatch.setenv("ROBUST_SHIPPED_MODELS", "1")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=240).run()
    robust = next(e for e in ModelStore(isolated_store).list("mnist") if e.meta["config"]["method"] == "pgd_at")
    at.switch_page("lab_pages/classviz.py").run()
    [start] = [r for r in at.radio if r.label == "Start from"]
    start.set_value("test").run()
    [index] = [n for n in at.number_input if n.label == "Test image"]
    index.set_value(4).run()  # the first 4 of the test set
    [models] = [m for m in at.multiselect if m.label == "Models (side by side)"]
    models.set_value([robust.model_id]).run()
    [b for b in at.button if b.label == "Morph"][0].click().run()
    finish_jobs(at)
    comparison = at.session_state["classviz"]["comparison"]
    [name] = comparison.results
    assert float(comparison.results[name].final_probabilities[0, 9]) >= 0.9
    assert comparison.cross[name]["k-NN (k=3)"][0] == 9
    assert any("looks like a 9" in m.value for m in at.markdown)


def test_the_morph_figure_plays_by_moving_a_window_over_one_strip():
    """Frames never swap the image's source (it would be re-decoded, and drawn blank while playing)."""
    import numpy as np

    from robust_core.plots import GALLERY_GAP, morph_figure

    frames = np.random.default_rng(0).random((60, 28, 28))
    fig = morph_figure(frames, np.full((60, 10), 0.1), list(range(60)), target=9, class_names=list("0123456789"),
                       title="t")
    assert (len(fig.layout.images) == 1 and all(t.type != "image" for t in fig.data)
            and not any(f.layout.images for f in fig.frames))
    assert len(fig.frames) == 41
    starts = [f.layout.xaxis.range[0] for f in fig.frames]
    assert starts == [k * (28 + GALLERY_GAP) - 0.5 for k in range(41)]
    play = fig.layout.updatemenus[0].buttons[0].args[1]
    assert play["transition"]["duration"] == 0 and play["frame"]["redraw"] is False
    # It opens on the result; play runs every frame from the start.
    assert fig.layout.xaxis.range == tuple(fig.frames[-1].layout.xaxis.range) and fig.layout.sliders[0].active == 40
    assert list(fig.layout.updatemenus[0].buttons[0].args[0]) == [f.name for f in fig.frames]
