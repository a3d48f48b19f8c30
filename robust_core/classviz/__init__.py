"""Class visualisation by gradient ascent on the pixels (seed 002 §3-4, seed 004 Part 3).

Split the Lucent way: a **parametrisation** (where the image starts and how it is kept valid),
**transforms** applied before each forward pass (jitter, Gaussian noise, blur), and an **objective** (what to
maximise, with its regularisers). :func:`visualize` runs them; :func:`knn_morph` is the seed's
gradient-free k-NN counterpart.

    from robust_core.classviz import RECIPES, visualize
    result = visualize(model, target=list(range(10)), start="zeros", **RECIPES["smoothed"])
    result.final            # (10, 1, 28, 28): the start morphed toward each class
    result.probabilities    # (steps + 1, 10, 10): every class's probability along the way
"""
from .knn import KNNMorphResult, knn_morph
from .objectives import OBJECTIVES, objective_loss, regulariser_loss
from .parametrisation import STARTS, start_images
from .readings import knn_read, readings
from .transforms import blur, gaussian_noise, jitter
from .visualize import RECIPES, STEP_NORMS, VisualizationResult, dark_gradient_share, visualize

__all__ = ["KNNMorphResult", "OBJECTIVES", "RECIPES", "STARTS", "STEP_NORMS", "VisualizationResult", "blur",
           "dark_gradient_share", "gaussian_noise", "jitter", "knn_morph", "knn_read", "readings",
           "objective_loss", "regulariser_loss", "start_images", "visualize"]
