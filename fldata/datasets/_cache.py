"""An on-disk ``.npz`` cache of arrays decoded from slow archives (CIFAR-10's ``.tar.xz``).

Each entry is keyed by the archive's resolved path, size and modification time, and
stores them; an entry is used only if they still match and it loads and validates
cleanly (zip CRCs included), otherwise it is rebuilt.  Entries are written to a
temporary file and renamed into place with :func:`os.replace`, so readers never see
a half-written file.  Deleting the cache folder is always safe.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..cache import CACHE_ENV_VAR, cache_root

CACHE_FORMAT_VERSION = 1
ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test")
Arrays = dict[str, np.ndarray]


cache_dir = cache_root  # the one cache root (fldata.cache), under its older name


def _archive_identity(archive: Path) -> dict[str, str]:
    stat = archive.stat()
    return {
        "archive": str(archive.resolve()),
        "size": str(stat.st_size),
        "mtime_ns": str(stat.st_mtime_ns),
        "version": str(CACHE_FORMAT_VERSION),
    }


def cache_path(archive: Path, tag: str) -> Path:
    """Where the cache entry of ``archive`` lives (it may not exist)."""
    identity = _archive_identity(archive)
    digest = hashlib.sha256("|".join(identity.values()).encode()).hexdigest()[:20]
    return cache_dir() / f"{tag}-{digest}.npz"


def _read_entry(
    entry: Path, identity: dict[str, str], validate: Callable[[Arrays], object]
) -> Arrays:
    with np.load(entry, allow_pickle=False) as stored:
        stored_identity = {key: str(stored[f"meta_{key}"]) for key in identity}
        if stored_identity != identity:
            raise ValueError(f"entry belongs to {stored_identity}, not {identity}")
        arrays = {name: stored[name] for name in ARRAY_NAMES}
    validate(arrays)
    return arrays


def _write_entry(entry: Path, identity: dict[str, str], arrays: Arrays) -> None:
    meta = {f"meta_{key}": np.array(value) for key, value in identity.items()}
    # numpy's stubs match **arrays against the allow_pickle keyword, hence the ignore.
    atomic_write(entry, lambda stream: np.savez(stream, **arrays, **meta))  # type: ignore[arg-type]


def cached_arrays(
    archive: Path, tag: str, build: Callable[[], Arrays], validate: Callable[[Arrays], object]
) -> Arrays:
    """Return ``build()``'s arrays for ``archive``, from the cache when a valid entry exists.

    ``validate`` raises on arrays that must not be used.  A cache that cannot be read
    or written only costs time: it is reported with a warning, never an error.
    """
    identity = _archive_identity(archive)
    entry = cache_path(archive, tag)
    if entry.exists():
        try:
            return _read_entry(entry, identity, validate)
        except Exception as error:  # any damage to a cache entry means: rebuild it
            warnings.warn(
                f"ignoring unusable cache entry {entry} ({type(error).__name__}: {error}); "
                "rebuilding it",
                RuntimeWarning,
                stacklevel=3,
            )
    arrays = build()
    validate(arrays)  # never cache arrays that would be refused on the way back
    try:
        _write_entry(entry, identity, arrays)
    except OSError as error:
        warnings.warn(
            f"could not write cache entry {entry} ({error}); CIFAR-10 will be decoded again next "
            f"time (set {CACHE_ENV_VAR} to a writable folder)",
            RuntimeWarning,
            stacklevel=3,
        )
    return arrays
