"""Class visualisation by gradient ascent on the pixels, on digits and on colour photos.

Split the Lucent way: a **parametrisation** (where the image starts and how it is kept valid),
**transforms** applied before each forward pass (jitter, Gaussian noise, blur), and an **objective** (what to
maximise, with its regularisers). :func:`visualize` runs them; :func:`knn_morph` is a
gradient-free k-NN counterpart.

    from robust_core.classviz import RECIPES, visualize
    result = visualize(model, target=list(range(10)), start="zeros", **RECIPES["smoothed"])
    result.final            # (10, 1, 28, 28): the start morphed toward each class
    result.probabilities    # (steps + 1, 10, 10): every class's probability along the way

Images are (N, C, H, W) in [0, 1] of any size: for 224 x 224 colour photos and an ImageNet network (which takes
[0, 1] images and normalises them itself), ``RECIPES["photo"]`` optimises a 1/f-scaled, colour-decorrelated
spectrum (``parametrisation="fft"``, Lucent's ``fft_image``) with jitter, scale and rotation robustness:

    result = visualize(net, 207, start="gaussian", shape=(3, 224, 224), threshold=None, **RECIPES["photo"])
    result = visualize(net, 207, start="image", image=photo, threshold=None, **RECIPES["photo"])
"""

from .knn import KNNMorphResult, knn_morph
from .objectives import OBJECTIVES, objective_loss, regulariser_loss
from .parametrisation import PARAMETRISATIONS, STARTS, FFTImage, start_images
from .readings import knn_read, readings
from .transforms import blur, gaussian_noise, jitter, random_rotate, random_scale
from .visualize import RECIPES, STEP_NORMS, VisualizationResult, dark_gradient_share, visualize

__all__ = ["FFTImage", "KNNMorphResult", "OBJECTIVES", "PARAMETRISATIONS", "RECIPES", "STARTS", "STEP_NORMS",
           "VisualizationResult", "blur", "dark_gradient_share", "gaussian_noise", "jitter", "knn_morph", "knn_read",
           "readings", "objective_loss", "random_rotate", "random_scale", "regulariser_loss", "start_images",
           "visualize"]
