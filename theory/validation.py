"""Input checks shared by the theory modules; each raises a ValueError that says what is allowed."""

from __future__ import annotations

import numpy as np


def check_matrix(name: str, array: np.ndarray) -> np.ndarray:
    """Require a finite 2-D float array (finite iff its min and max are: both propagate NaN and
    +-inf).
    """
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {array.shape}")
    if array.size and not (np.isfinite(array.min()) and np.isfinite(array.max())):
        raise ValueError(f"{name} contains NaN or infinite values; all entries must be finite")
    return array


def check_same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    """Require ``a.shape == b.shape``."""
    if np.shape(a) != np.shape(b):
        raise ValueError(
            f"{name_a} has shape {np.shape(a)} but {name_b} "
            f"has shape {np.shape(b)}; they must match"
        )


def check_labels(labels: np.ndarray, n: int, num_classes: int) -> np.ndarray:
    """Require ``n`` integer labels in ``0..num_classes-1``; returns them as int64."""
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1}, got range {labels.min()}..{labels.max()}"
        )
    return labels.astype(np.int64, copy=False)


def check_class(name: str, value: int, num_classes: int) -> int:
    """Require an integer class index in ``0..num_classes-1``."""
    if not isinstance(value, (int, np.integer)) or not 0 <= int(value) < num_classes:
        raise ValueError(f"{name} must be an integer class in 0..{num_classes - 1}, got {value!r}")
    return int(value)


def check_support(support: np.ndarray | None, dim: int) -> np.ndarray:
    """Boolean mask of the coordinates the trigger error may touch (THEORY.md section 6.6);
    ``None`` means every coordinate."""
    if support is None:
        return np.ones(dim, dtype=bool)
    support = np.asarray(support)
    if support.shape != (dim,) or support.dtype != bool:
        raise ValueError(
            f"support must be a boolean mask of shape ({dim},), got {support.dtype} {support.shape}"
        )
    return support


def check_radius(eps: float) -> float:
    """Require a finite radius ``eps >= 0``."""
    eps = float(eps)
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"radius eps must be a finite number >= 0, got {eps}")
    return eps
