"""A restricted unpickler for data files: numpy arrays and builtin containers only.

A pickle is a program: ``pickle.load`` calls whatever callables the file names
(``os.system`` included).  Data pickles (the classic ``mnist.pkl.gz``, CIFAR-10's
``cifar-10-batches-py``) only need numpy's array reconstruction, so every other
global is refused with :class:`DataError` before it is imported or called.
"""

from __future__ import annotations

import codecs
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._core import DataError

try:  # numpy >= 2 (numpy 1.26 also ships the numpy._core alias)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy < 1.26
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

# Python-2 pickles name the builtins module "__builtin__".
_MODULE_ALIASES = {"__builtin__": "builtins"}


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it to store bytes, limited to latin-1."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise DataError(f"refusing to unpickle _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1", errors)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{
        (module, "_reconstruct"): _multiarray._reconstruct
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    },
    **{
        (module, "scalar"): _multiarray.scalar
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    },
    **{
        (module, "_frombuffer"): _numeric._frombuffer  # type: ignore[attr-defined]  # private, unstubbed
        for module in ("numpy.core.numeric", "numpy._core.numeric")
    },
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    **{
        ("builtins", container.__name__): container
        for container in (list, tuple, dict, set, frozenset, bytearray)
    },
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` resolves only numpy array reconstruction and containers."""

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        allowed = _ALLOWED_GLOBALS.get((_MODULE_ALIASES.get(module, module), name))
        if allowed is None:
            raise DataError(
                f"refusing to unpickle {module}.{name}: data pickles may only contain numpy arrays "
                "and builtin containers"
            )
        return allowed


def restricted_loads(data: bytes, source: str | Path) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (latin-1 for Python-2 strings).

    Raises:
        DataError: naming ``source``, if the pickle is corrupt or names a forbidden global.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except DataError as error:
        raise DataError(f"{source}: {error}") from None
    except Exception as error:  # a corrupt pickle can raise almost anything; name the file
        raise DataError(f"{source}: corrupt pickle ({type(error).__name__}: {error})") from error
