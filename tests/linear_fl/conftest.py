"""Session fixtures for the linear_fl tests (small MNIST slice, pre-training cached in a temp
dir).
"""

from __future__ import annotations

import pytest
from linear_fl_fixtures import small_config

from linear_fl.twin import prepare


@pytest.fixture(scope="session")
def small_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("linear_fl_cache"))


@pytest.fixture(scope="session")
def small_setup(small_cache):
    return prepare(small_config(small_cache))
