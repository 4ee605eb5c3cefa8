"""Session-wide test setup.

The README's test command sets ``FLIPLAB_DATA=../shared/data``, a path relative to the repository.
Several tests run a CLI in a subprocess from a temporary working directory, where that relative path
points nowhere; making it absolute once, here, lets every child process find the data.
"""

from __future__ import annotations

import os
from pathlib import Path

from fldata.datasets import ENV_VAR


def _absolute_data_root() -> None:
    value = os.environ.get(ENV_VAR)
    if value and not Path(value).is_absolute():
        os.environ[ENV_VAR] = str(Path(value).resolve())


_absolute_data_root()
