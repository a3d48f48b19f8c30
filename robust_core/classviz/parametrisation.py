"""Where the image starts and what the ascent optimises.

:func:`start_images`: a given picture (a drawn digit, a test image, a photo) or noise, one per target, images
(N, C, H, W) in [0, 1] of any C, H, W. :class:`FFTImage`: Lucent's FFT / decorrelated-colour parametrisation
(``visualize(..., parametrisation="fft")``), where the optimised variable is a 1/f-scaled spectrum and the image
is a function of it; ``"pixel"`` optimises the pixels themselves.
"""
from __future__ import annotations

import torch

STARTS = ("image", "uniform", "gaussian", "zeros")


def start_images(kind: str, n: int, shape: tuple[int, int, int], *, image: torch.Tensor | None = None, seed: int = 0,
                 device=None) -> torch.Tensor:
    """n starting images (n, C, H, W) in [0, 1].

    kind: "image" (``image`` repeated, (C, H, W) or (1, C, H, W)), "uniform" noise in [0, 1],
    "gaussian" noise N(0.5, 0.15^2) clipped, or "zeros". Noise comes from a CPU generator seeded by
    ``seed`` (same start on CPU and GPU); each of the n images gets its own draw.
    """
    g = torch.Generator().manual_seed(seed)
    if kind == "image":
        if image is None:
            raise ValueError("start='image' needs image=")
        img = image.detach().reshape(1, *shape).float()
        if not torch.isfinite(img).all() or img.min() < 0 or img.max() > 1:
            raise ValueError("the start image must be finite and in [0, 1]")
        out = img.repeat(n, 1, 1, 1)
    elif kind == "uniform":
        out = torch.rand((n, *shape), generator=g)
    elif kind == "gaussian":
        out = (0.5 + 0.15 * torch.randn((n, *shape), generator=g)).clamp(0, 1)
    elif kind == "zeros":
        out = torch.zeros((n, *shape))
    else:
        raise ValueError(f"start must be one of {STARTS}, not {kind!r}")
    return out.to(device if device is not None else (image.device if image is not None else "cpu"))


# ---- Lucent's FFT / decorrelated-colour parametrisation (Olah et al. 2017, "Feature Visualization", Distill) ----
PARAMETRISATIONS = {
    "pixel": "the pixels themselves, clipped to [0, 1] after each step",
    "fft": "a 1/f-scaled Fourier spectrum per (decorrelated) colour channel, through a sigmoid to [0, 1] "
           "(Lucent's fft_image)",
}

# Square root of the ImageNet colour correlation matrix (from its SVD; Lucid/Lucent's ``color_correlation_svd_sqrt``),
# columns: the image's R, G, B as a mix of three decorrelated "colours". Normalised so that its largest column has
# norm 1, as Lucent does.
COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                                           [0.27, 0.00, -0.05],
                                           [0.27, -0.09, 0.03]])
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()
FFT_MAGIC = 4.0  # Lucid's constant: the inverse FFT is divided by it (less saturated images at the start)
FFT_NOISE_SD = 0.01  # Lucent's fft_image init: spectrum ~ N(0, 0.01^2), a mid-grey image with faint 1/f noise
SIGMOID_CLAMP = 5e-4  # a start image is clamped to [eps, 1 - eps] before the inverse sigmoid (error <= eps)


class FFTImage:
    """Images (N, C, H, W) in [0, 1] as a function of a spectrum variable (N, C, H, W // 2 + 1, 2).

    image = sigmoid(decorrelate(irfft2(spectrum * scale, norm="ortho") / 4)), with

    * ``spectrum``: the real and imaginary parts of each channel's 2-D real FFT, the variable gradient steps act
      on (a step of lr moves each coefficient by up to lr: the units are Lucent's, so its Adam lr of 0.05
      corresponds to sign steps of about 0.05);
    * ``scale`` = 1 / max(f, 1 / max(H, W)) ** decay_power, f the frequency in cycles per pixel: a unit
      coefficient has the amplitude of natural images' 1/f spectrum. Why: in pixel space the gradient of a
      network's logit is dominated by high frequencies, so pixel ascent draws high-frequency adversarial
      noise; with the 1/f scaling a step moves low frequencies as much as the spectrum of a photo would
      (it is gradient descent with a preconditioner that whitens natural images, Olah et al. 2017);
    * ``decorrelate`` (3 channels only): the channels are mixed by :data:`COLOR_CORRELATION`, so each
      optimised channel is a decorrelated colour of ImageNet photos and steps change colours the way natural
      images vary (brightness first), not R, G and B independently;
    * the sigmoid keeps the image in (0, 1) without clipping (a clipped pixel gets no gradient).

    :meth:`spectrum` inverts it (clamp to [``SIGMOID_CLAMP``, 1 - ``SIGMOID_CLAMP``], logit, undo the colour
    mixing, rfft2, divide by the scale): ``image(spectrum(x))`` equals x within ``SIGMOID_CLAMP``.
    """

    def __init__(self, shape: tuple[int, int, int], *, device=None, decay_power: float = 1.0,
                 decorrelate: bool | None = None):
        c, h, w = (int(v) for v in shape)
        self.shape, self.device = (c, h, w), torch.device(device if device is not None else "cpu")
        fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
        fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
        freqs = (fx ** 2 + fy ** 2).sqrt()
        # (H, W//2+1, 1)
        self.scale = (1.0 / freqs.clamp_min(1.0 / max(h, w)) ** decay_power).float().to(self.device)[..., None]
        self.decorrelate = c == 3 if decorrelate is None else bool(decorrelate)
        if self.decorrelate and c != 3:
            raise ValueError("colour decorrelation needs 3 channels")
        self.mix = COLOR_CORRELATION.to(self.device)
        self.unmix = torch.linalg.inv(COLOR_CORRELATION.double()).float().to(self.device)

    def spectrum_shape(self, n: int) -> tuple[int, ...]:
        c, h, w = self.shape
        return (n, c, h, w // 2 + 1, 2)

    def image(self, spectrum: torch.Tensor) -> torch.Tensor:
        """The images (N, C, H, W) in (0, 1) of a spectrum (differentiable)."""
        h, w = self.shape[1:]
        z = torch.fft.irfft2(torch.view_as_complex((spectrum * self.scale).contiguous()), s=(h, w),
                             norm="ortho") / FFT_MAGIC
        if self.decorrelate:
            z = torch.einsum("cj,njhw->nchw", self.mix, z)
        return torch.sigmoid(z)

    def spectrum(self, image: torch.Tensor) -> torch.Tensor:
        """The spectrum whose image is ``image`` (N, C, H, W) in [0, 1] (within ``SIGMOID_CLAMP``)."""
        y = image.detach().to(self.device).float().reshape(-1, *self.shape).clamp(SIGMOID_CLAMP, 1 - SIGMOID_CLAMP)
        z = torch.logit(y)
        if self.decorrelate:
            z = torch.einsum("cj,njhw->nchw", self.unmix, z)
        return (torch.view_as_real(torch.fft.rfft2(z * FFT_MAGIC, norm="ortho")) / self.scale).contiguous()

    def random(self, kind: str, n: int, *, seed: int = 0) -> torch.Tensor:
        """A start spectrum (n, ...) for the noise starts: "gaussian" N(0, 0.01^2) per coefficient (Lucent's init),
        "uniform" with the same standard deviation, "zeros" the zero spectrum (uniform grey 0.5, where the
        sigmoid is steepest). Seeded by ``seed`` on a CPU generator, one draw per image."""
        g = torch.Generator().manual_seed(seed)
        size = self.spectrum_shape(n)
        if kind == "gaussian":
            out = FFT_NOISE_SD * torch.randn(size, generator=g)
        elif kind == "uniform":
            out = FFT_NOISE_SD * 3 ** 0.5 * (2 * torch.rand(size, generator=g) - 1)
        elif kind == "zeros":
            out = torch.zeros(size)
        else:
            raise ValueError(f"a random fft start is 'uniform', 'gaussian' or 'zeros', not {kind!r}")
        return out.to(self.device)
