"""fldata.outliers: median and scaled MAD against a direct evaluation of the definition."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fldata.outliers import MAD_NORMAL_CONSISTENCY, median_and_scaled_mad


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30))
def test_matches_the_definition(values: list[float]) -> None:
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    got_median, got_spread = median_and_scaled_mad(values)
    assert got_median == pytest.approx(median, rel=1e-12, abs=1e-9)
    assert got_spread == pytest.approx(MAD_NORMAL_CONSISTENCY * mad, rel=1e-12, abs=1e-9)


def test_spread_is_a_standard_deviation_estimate_for_normal_data() -> None:
    sample = np.random.default_rng(0).normal(3.0, 2.0, size=20_001)
    median, spread = median_and_scaled_mad(sample)
    assert median == pytest.approx(3.0, abs=0.05)
    assert spread == pytest.approx(2.0, rel=0.03)


def test_one_outlier_moves_neither_statistic_much() -> None:
    assert median_and_scaled_mad([1.0, 2.0, 3.0, 4.0, 1e9]) == (3.0, MAD_NORMAL_CONSISTENCY * 1.0)


def test_empty_input_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        median_and_scaled_mad([])
