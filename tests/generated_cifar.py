"""Small generated CIFAR-10 data in the distributed file format (no CIFAR-10 is reachable from these machines):
each class a colour and a stripe direction of its own, with noise, so that a small network learns it in an epoch."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from robust_core.cifar_files import FOLDER, TEST_BATCH, TRAIN_BATCHES, write_batch


def generated_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    colours = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200], [200, 200, 60], [200, 60, 200],
                        [60, 200, 200], [230, 140, 40], [120, 120, 120], [40, 90, 160], [160, 90, 40]], dtype=float)
    rows, cols = np.mgrid[0:32, 0:32]
    angles = np.linspace(0, np.pi, 10, endpoint=False)
    images = np.empty((count, 32, 32, 3), dtype=np.uint8)
    for i, c in enumerate(labels):
        stripes = 0.5 + 0.5 * np.sin((np.cos(angles[c]) * rows + np.sin(angles[c]) * cols) * 0.8)
        # Colours pulled toward grey (a quarter of their distance left) and noisy: separable, but not by a margin
        # that 8/255 in L∞ could never cross.
        colour = 128 + 0.25 * (colours[c] - 128)
        picture = colour * (0.7 + 0.3 * stripes[..., None]) + rng.normal(0, 30, (32, 32, 3))
        images[i] = np.clip(picture, 0, 255).astype(np.uint8)
    return images, labels


def write_generated_cifar10(root: Path, *, per_batch: int = 400, test: int = 500, seed: int = 0) -> Path:
    """``root / "cifar-10-batches-py"`` with five training batches of ``per_batch`` images and a test batch."""
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(TRAIN_BATCHES):
        write_batch(folder / name, *generated_images(per_batch, seed + i))
    write_batch(folder / TEST_BATCH, *generated_images(test, seed + 100))
    return Path(root)
