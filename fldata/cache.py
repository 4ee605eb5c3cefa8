"""The one cache root of every fliplab package: ``$FLIPLAB_CACHE``, else ``~/.cache/fliplab``.

Decoded data sets (``fldata.datasets``), linear pre-training (``linear_fl``) and deep pre-training
(``deepfl``) all keep their caches in sub-folders of :func:`cache_root`, never under the working
directory: a file planted in a shared working directory is never read as a cache entry. Every
cache is safe to delete.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV_VAR = "FLIPLAB_CACHE"


def cache_root() -> Path:
    """The cache folder: ``$FLIPLAB_CACHE`` if set (and not empty), else ``~/.cache/fliplab``.

    Read on every call, so a changed environment variable takes effect at once.
    """
    configured = os.environ.get(CACHE_ENV_VAR)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "fliplab"
