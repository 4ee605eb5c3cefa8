"""The in-memory data set type, the error types, and the pixel conversions.

Images are stored as the files store them: ``uint8`` pixels, ``(N, H, W)`` for grey
sets and ``(N, H, W, C)`` for colour sets, with ``int64`` labels.  The models of the
paper (section 4, Appendix A.2) and the triggers of ``fldata.triggers`` (paper eq. 1)
work on float images in ``[0, 1]``, channel first; :func:`to_float_chw` and
:func:`flatten_unit` are the one place that conversion happens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..cache import CACHE_ENV_VAR  # noqa: F401 (re-exported by fldata.datasets)

DATASET_NAMES: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "digits")
ENV_VAR = "FLIPLAB_DATA"


class DataError(ValueError):
    """A data file is corrupt, truncated or inconsistent; the message names the file."""


class DataNotFoundError(FileNotFoundError):
    """A data set is not on disk; the message lists every place searched and how to get it."""


@dataclass(frozen=True, eq=False)  # eq=False: compare/hash by identity, arrays have no truth value
class Dataset:
    """A labelled train/test split held in memory.

    Attributes:
        name: canonical name, one of :data:`DATASET_NAMES`.
        x_train, x_test: ``uint8`` images, ``(N, H, W)`` grey or ``(N, H, W, C)`` colour.
        y_train, y_test: ``int64`` labels in ``[0, num_classes)``.
        num_classes: number of classes.
        source: where the arrays were read from (path and format).

    The constructor checks dtypes, shapes and label ranges and raises :class:`DataError`.
    ``load_dataset`` returns fresh, writable, C-contiguous arrays (fine for ``torch.from_numpy``).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    source: str

    def __post_init__(self) -> None:
        for split, images, labels in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            where = f"{self.source}: {split} split"
            if (
                not isinstance(images, np.ndarray)
                or images.dtype != np.uint8
                or images.ndim not in (3, 4)
            ):
                raise DataError(
                    f"{where}: images must be a uint8 array (N,H,W) or (N,H,W,C), got "
                    f"{_describe(images)}"
                )
            if not isinstance(labels, np.ndarray) or labels.dtype != np.int64 or labels.ndim != 1:
                raise DataError(
                    f"{where}: labels must be a 1-D int64 array, got {_describe(labels)}"
                )
            check_labels(labels, self.num_classes, where)
            check_counts(len(images), len(labels), where)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(
                f"{self.source}: train images are {self.x_train.shape[1:]} but test images are "
                f"{self.x_test.shape[1:]}"
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Channel-first shape ``(C, H, W)`` of one image, as :func:`to_float_chw` returns it."""
        if self.x_train.ndim == 3:
            return (1, *self.x_train.shape[1:])
        height, width, channels = self.x_train.shape[1:]
        return (channels, height, width)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
            f"num_classes={self.num_classes}, source={self.source!r})"
        )


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Raise :class:`DataError` unless every label lies in ``[0, num_classes)``."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise DataError(
            f"{where}: label value {labels[bad[0]]} at index {bad[0]} is out of range "
            f"0..{num_classes - 1} ({bad.size} bad labels)"
        )


def check_counts(num_images: int, num_labels: int, where: str) -> None:
    """Raise :class:`DataError` unless there are as many labels as images, and at least one."""
    if num_images != num_labels:
        raise DataError(f"{where}: {num_labels} labels but {num_images} images (counts must match)")
    if num_images == 0:
        raise DataError(f"{where}: contains no samples")


def to_float_chw(images: np.ndarray, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """Convert ``uint8`` images to floats in ``[0, 1]``, channel first.

    ``x_float = x_uint8 / 255``; ``(N, H, W) -> (N, 1, H, W)`` and
    ``(N, H, W, C) -> (N, C, H, W)``.  This is the image domain ``[0,1]^(C x H x W)``
    on which the trigger stamp ``(1 - m) * x + m * p`` of paper eq. 1 acts.

    Args:
        images: ``uint8`` array of 3 dims (grey) or 4 dims (channels last).
        dtype: a floating dtype for the result (default ``float32``).

    Returns:
        A new C-contiguous array of shape ``(N, C, H, W)``.

    Raises:
        ValueError: if ``images`` is not a 3- or 4-dim ``uint8`` array or ``dtype`` is not floating.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(
            "to_float_chw expects a uint8 array of shape (N,H,W) or (N,H,W,C), got "
            f"{_describe(images)}"
        )
    out_dtype = np.dtype(dtype)
    if not np.issubdtype(out_dtype, np.floating):
        raise ValueError(
            f"to_float_chw: dtype must be a floating type (e.g. float32, float64), got {out_dtype}"
        )
    channel_first = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    out = np.empty(channel_first.shape, dtype=out_dtype)
    np.divide(channel_first, 255, out=out)
    return out


def flatten_unit(images: np.ndarray) -> np.ndarray:
    """Flatten ``uint8`` images to ``float64`` rows in ``[0, 1]``, ``(N, C*H*W)``.

    Row ``n`` is ``to_float_chw(images)[n].ravel()``: pixels / 255 in channel-first
    ``(C, H, W)`` order, the feature vectors ``x in R^d`` of the linear model of
    THEORY.md section 10 (paper section 5.3, App. A.2: d = 784 for MNIST), so that a flattened
    trigger of ``fldata.triggers`` lines up with them.
    """
    chw = to_float_chw(images, np.float64)
    return chw.reshape(len(chw), -1)
