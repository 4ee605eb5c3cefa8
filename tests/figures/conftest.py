"""Fixtures of the figures tests: synthetic result files written under tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from figures_testdata import make_theory_result


@pytest.fixture
def write_theory_result(tmp_path: Path):
    """Write a synthetic theory result to tmp_path/<name>.json and return the path."""

    def write(name: str, **kwargs: Any) -> Path:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(make_theory_result(**kwargs)))
        return path

    return write
