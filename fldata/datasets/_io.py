"""Reading raw bytes from data files, with gzip decoding and errors that name the file."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from ._core import DataError


def read_bytes(path: Path) -> bytes:
    """Return the content of ``path``, gunzipped when the name ends in ``.gz``.

    Raises:
        DataError: if a ``.gz`` file is not valid gzip (bad header, truncated, CRC mismatch).
    """
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"{path}: corrupt or truncated gzip file ({error}); delete it and fetch it again"
        ) from error
