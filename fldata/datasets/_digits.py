"""scikit-learn's 8x8 digits (1,797 images), with a deterministic seeded train/test split."""

from __future__ import annotations

import numpy as np

from ._core import DataNotFoundError, Dataset

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2
DIGITS_MAX_VALUE = 16  # load_digits pixels are counts 0..16 (4x4 blocks of a 32x32 bitmap)


def split_indices(
    num_samples: int, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted ``(train, test)`` index arrays; ``round(test_fraction * n)`` go to test.

    The test set is the first ``n_test`` entries of ``default_rng(seed).permutation(n)``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    order = np.random.default_rng(seed).permutation(num_samples)
    num_test = int(round(test_fraction * num_samples))
    return np.sort(order[num_test:]), np.sort(order[:num_test])


def load_digits_dataset() -> Dataset:
    """scikit-learn's ``load_digits`` as uint8 ``(N, 8, 8)`` images, ``pixel = round(value * 255 /
    16)``.

    Split with :func:`split_indices` (seed ``DIGITS_SPLIT_SEED``, 20 % test).

    Raises:
        DataNotFoundError: if scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise DataNotFoundError(
            "data set 'digits' needs scikit-learn, which is not installed: pip install "
            "scikit-learn (load_digits ships inside it, no download)"
        ) from error
    bunch = load_digits()
    values = np.asarray(bunch.images, dtype=np.float64)
    images = np.rint(values * (255 / DIGITS_MAX_VALUE)).clip(0, 255).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    train, test = split_indices(len(labels), DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    return Dataset(
        "digits",
        images[train],
        labels[train],
        images[test],
        labels[test],
        num_classes=10,
        source=f"sklearn.datasets.load_digits (seeded split: seed={DIGITS_SPLIT_SEED}, "
        f"test fraction={DIGITS_TEST_FRACTION})",
    )
