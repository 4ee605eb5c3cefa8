"""Atomic file writes, the one implementation every package uses (results, caches, checkpoints,
figures).

The content is written to a temporary sibling in the same folder, flushed and fsynced, then renamed
onto the target with :func:`os.replace`, so a reader - or a run resumed after a crash - sees either
the old complete file or the new complete file, never a partial one. On any error the temporary file
is removed and the target is left as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(stream)`` on a binary stream that becomes ``path`` only once it is complete.

    Parent folders are created. Returns the target path.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(
            temp_name, 0o666 & ~_current_umask()
        )  # mkstemp makes 0600; give the usual file mode
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike[str], payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically."""
    return atomic_write(path, lambda stream: stream.write(payload))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(
    path: str | os.PathLike[str],
    obj: Any,
    *,
    indent: int = 2,
    sort_keys: bool = True,
    allow_nan: bool = True,
) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; ``allow_nan=False`` refuses NaN and infinities
    (strict JSON) with a ``ValueError`` instead of writing ``NaN``."""
    return write_text_atomic(
        path, json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan)
    )
