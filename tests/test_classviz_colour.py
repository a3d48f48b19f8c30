"""Class visualisation on colour images of any size: FFT parametrisation, scale and rotation
transforms, colour exports. A random-weight SqueezeNet 1.1 (offline) on small images keeps it fast."""
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robust_core.classviz import (
    RECIPES,
    FFTImage,
    random_rotate,
    random_scale,
    visualize,
)

SHAPE = (3, 64, 64)


class Normalised(torch.nn.Module):
    """An ImageNet network that takes [0, 1] images and normalises them itself (the lab's convention)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x):
        return self.backbone((x - self.mean) / self.std)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Batches of one or two small images gain nothing from threads, and on a shared 2-core machine OpenMP
    threads that wait for each other make a SqueezeNet step 100x slower: one thread here, restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def net():
    from torchvision.models import squeezenet1_1

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return Normalised(squeezenet1_1(weights=None)).eval()


def photo_like(seed=0, shape=SHAPE):
    """A smooth colour picture with saturated pixels (0 and 1), like a photo's highlights and shadows."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand((1, *shape[:1], 8, 8), generator=g)
    img = F.interpolate(low, size=shape[1:], mode="bilinear", align_corners=False)[0]
    return ((img - 0.5) * 1.6 + 0.5).clamp(0, 1)


@pytest.mark.parametrize("parametrisation, shape", [("pixel", (3, 64, 64)), ("fft", (3, 64, 64)), ("fft", (3, 63, 50))])
def test_frames_and_final_are_colour_images_in_the_unit_range(net, parametrisation, shape):
    net.train()
    r = visualize(net, [1, 2], start="gaussian", shape=shape, steps=4, lr=0.5 if parametrisation == "pixel" else 5.0,
                  loss="logit", parametrisation=parametrisation, jitter_pixels=4, scale_jitter=0.05, rotate_degrees=5,
                  tv=0.05, threshold=None, seed=0)
    assert net.training
    net.eval()
    assert r.frames.shape == (5, 2, *shape) and r.final.shape == (2, *shape) and r.probabilities.shape == (5, 2, 1000)
    assert torch.equal(r.frames[-1], r.final) and not r.final.requires_grad and not r.frames.requires_grad
    assert torch.isfinite(r.frames).all() and r.frames.min() >= 0 and r.frames.max() <= 1
    assert (r.final != r.frames[0]).any()
    # The probabilities stored with a frame are those of that (clean) frame.
    with torch.no_grad():
        assert torch.allclose(r.probabilities[-1], net(r.final).softmax(1), atol=1e-5)


def test_fft_starts_from_a_colour_photo_and_round_trips():
    photo = photo_like()
    assert photo.min() == 0 and photo.max() == 1
    for shape, image in ((SHAPE, photo), ((3, 63, 50), photo_like(1, (3, 63, 50))), ((1, 28, 28), photo[:1, :28, :28])):
        fft = FFTImage(shape)
        assert fft.decorrelate == (shape[0] == 3)
        spectrum = fft.spectrum(image)
        assert spectrum.shape == (1, shape[0], shape[1], shape[2] // 2 + 1, 2)
        assert (fft.image(spectrum)[0] - image).abs().max() < 1e-3


def test_fft_first_frame_is_the_start_image(net):
    photo = photo_like()
    r = visualize(net, 3, start="image", image=photo, steps=2, lr=5.0, parametrisation="fft", threshold=None)
    assert (r.frames[0, 0] - photo).abs().max() < 1e-3
    assert (r.final[0] - photo).abs().max() > 1e-3  # and the steps move it
    # The noise starts draw the spectrum (Lucent's init): a mid-grey picture with faint noise; "zeros" is grey 0.5.
    grey = visualize(net, 3, start="zeros", shape=SHAPE, steps=0, parametrisation="fft").final
    assert torch.allclose(grey, torch.full_like(grey, 0.5))
    noise = visualize(net, 3, start="gaussian", shape=SHAPE, steps=0, parametrisation="fft").final
    assert (noise - 0.5).abs().max() < 0.1 and noise.std() > 0
    with pytest.raises(ValueError, match="budget"):
        visualize(net, 3, start="image", image=photo, parametrisation="fft", budget=("linf", 0.1))
    with pytest.raises(ValueError, match="parametrisation"):
        visualize(net, 3, start="image", image=photo, parametrisation="wavelet")
    with pytest.raises(ValueError, match="shape"):
        visualize(net, 3, start="image", image=photo, shape=(3, 32, 32))


def test_scale_and_rotation_keep_the_shape_and_are_the_identity_at_zero():
    x = torch.rand(2, 3, 40, 64, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert random_scale(x, 0.0, g) is x and random_scale(x, (1.0, 1.0), g) is x and random_rotate(x, 0.0, g) is x
    assert torch.equal(g.get_state(), state)  # off means no draw: the other transforms' draws are unchanged
    for out in (random_scale(x, 0.1, g), random_rotate(x, 10.0, g), random_scale(x, (0.9, 0.95), g)):
        assert out.shape == x.shape and not torch.allclose(out, x)
        (grad,) = torch.autograd.grad(out.sum(), x)  # differentiable in the image
        assert grad.abs().sum() > 0
    # A zoom by 2 about the centre is the central half upsampled (bilinear), away from the border.
    zoomed = random_scale(x, (2.0, 2.0), g)
    upsampled = F.interpolate(x[..., 10:30, 16:48], scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(zoomed[..., 1:-1, 1:-1], upsampled[..., 1:-1, 1:-1], atol=1e-5)
    # Seeded: the same generator seed gives the same transform.
    a = random_rotate(x, 10.0, torch.Generator().manual_seed(3))
    b = random_rotate(x, 10.0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("parametrisation", ["pixel", "fft"])
def test_a_seed_gives_the_same_morph(net, parametrisation):
    settings = dict(start="uniform", shape=SHAPE, steps=3, lr=0.5 if parametrisation == "pixel" else 5.0, loss="logit",
                    parametrisation=parametrisation, jitter_pixels=4, scale_jitter=0.1, rotate_degrees=10,
                    threshold=None)
    a, b, c = (visualize(net, 7, seed=s, **settings) for s in (1, 1, 2))
    assert torch.equal(a.frames, b.frames) and torch.equal(a.probabilities, b.probabilities)
    assert not torch.equal(a.final, c.final)


@pytest.mark.parametrize("parametrisation", ["pixel", "fft"])
def test_a_few_steps_raise_the_target_logit(net, parametrisation):
    target = 11
    if parametrisation == "fft":  # the photo recipe, shortened
        r = visualize(net, target, start="gaussian", shape=SHAPE, seed=0, threshold=None,
                      **{**RECIPES["photo"], "steps": 8})
    else:
        r = visualize(net, target, start="gaussian", shape=SHAPE, steps=8, lr=5.0, loss="logit", jitter_pixels=4,
                      scale_jitter=0.05, rotate_degrees=5, threshold=None, seed=0)
    with torch.no_grad():
        before, after = net(r.frames[0])[0, target], net(r.final)[0, target]
    # A random network's logits are small (~0.1): the target's at least 1.5 times larger after 8 steps.
    assert after > 1.5 * before and after > before + 0.02, (float(before), float(after))
    assert r.probabilities[-1, 0, target] > r.probabilities[0, 0, target]


def test_colour_exports_decode_as_rgb(net):
    from PIL import Image

    from robust_core.classviz.export import finals_png, gif, strip_png
    from robust_core.plots import GALLERY_GAP

    r = visualize(net, [4, 9], start="image", image=photo_like(), steps=4, lr=5.0, parametrisation="fft",
                  threshold=None)
    strip = Image.open(io.BytesIO(strip_png(r, image=1, frames=3, scale=2)))
    assert strip.mode == "RGB" and strip.size == (2 * (3 * 64 + 2 * GALLERY_GAP), 128)
    pixels = torch.from_numpy(np.array(strip)).float()[::2, ::2] / 255
    # The last cell is the final image.
    assert torch.allclose(pixels[:, -64:], r.final[1].permute(1, 2, 0), atol=1 / 255 + 1e-6)
    assert torch.allclose(pixels[:, :64], r.frames[0, 1].permute(1, 2, 0), atol=1 / 255 + 1e-6)  # the first, the start
    finals = Image.open(io.BytesIO(finals_png(r)))
    assert finals.mode == "RGB" and finals.size == (2 * 64 + GALLERY_GAP, 64)  # photos are not enlarged by default
    animation = Image.open(io.BytesIO(gif(r, image=None)))
    assert animation.n_frames == 5 and animation.size == (2 * 64 + GALLERY_GAP, 64)
    rgb = np.asarray(animation.convert("RGB")).astype(np.float32)
    assert np.abs(rgb[..., 0] - rgb[..., 2]).max() > 20  # in colour, not grey
