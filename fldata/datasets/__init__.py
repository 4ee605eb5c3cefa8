"""Offline data sets for fliplab: MNIST, Fashion-MNIST, CIFAR-10 and scikit-learn's digits.

``load_dataset(name, root=None)`` reads the official on-disk formats (IDX, the classic
``mnist.pkl.gz``, CIFAR-10 binary or python batches, extracted or inside a tar archive)
and never downloads.  See /work/shared/DATA.md for the files and ``_paths`` for where
they are searched.  ``python -m fldata`` prints what is available.

Images come back as uint8 ``(N, H, W)`` / ``(N, H, W, C)`` with int64 labels;
:func:`to_float_chw` and :func:`flatten_unit` convert them to the ``[0, 1]`` channel-first
floats that the models and triggers (paper eq. 1) use.
"""

from ._cache import cache_dir
from ._core import (
    CACHE_ENV_VAR,
    DATASET_NAMES,
    ENV_VAR,
    DataError,
    DataNotFoundError,
    Dataset,
    flatten_unit,
    to_float_chw,
)
from ._load import load_dataset
from ._pickle import RestrictedUnpickler, restricted_loads

__all__ = [
    "CACHE_ENV_VAR",
    "DATASET_NAMES",
    "ENV_VAR",
    "DataError",
    "DataNotFoundError",
    "Dataset",
    "RestrictedUnpickler",
    "cache_dir",
    "flatten_unit",
    "load_dataset",
    "restricted_loads",
    "to_float_chw",
]
