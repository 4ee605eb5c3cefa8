"""Median absolute deviation (MAD) outlier statistics, the one implementation every package uses.

Neural Cleanse (Wang et al., S&P 2019, section IV.C) flags a candidate trigger as a backdoor when
its mask L1 norm is a small-side outlier among the candidates: the anomaly index of a value ``v``
among values ``x`` is ``(median(x) - v) / (1.4826 * MAD(x))`` with ``MAD(x) = median(|x -
median(x)|)``. The constant 1.4826 makes the scaled MAD a consistent estimator of the standard
deviation of normal data. FLIP's trigger selection (linear_fl.inversion and deepfl.flip) uses this
test.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["MAD_NORMAL_CONSISTENCY", "median_and_scaled_mad"]

MAD_NORMAL_CONSISTENCY = 1.4826


def median_and_scaled_mad(values: ArrayLike) -> tuple[float, float]:
    """``(median(x), 1.4826 * median(|x - median(x)|))`` of a non-empty set of values (NaN
    propagates).

    >>> median_and_scaled_mad([1.0, 2.0, 3.0, 10.0])
    (2.5, 1.4826)
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("the median and MAD of an empty set are undefined")
    median = float(np.median(x))
    return median, MAD_NORMAL_CONSISTENCY * float(np.median(np.abs(x - median)))
