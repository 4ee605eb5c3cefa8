"""Coordinate-wise trimmed mean (Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates", ICML 2018, Definition 2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from deepfl.defenses.base import (
    AggregationContext,
    AggregationResult,
    Aggregator,
    count_from_fraction,
    register,
)
from fldata.params import Constraints, Interval, Options

TRIM_MODES = ("fraction", "num_attackers")


def trimmed_mean(updates: Tensor, trim_per_tail: int) -> Tensor:
    r"""Per coordinate, drop the ``trim_per_tail`` largest and smallest values and average the rest.

    .. math:: \hat g_k = \frac{1}{n - 2t} \sum_{i = t+1}^{n-t} g_{(i),k}

    with :math:`g_{(1),k} \le \dots \le g_{(n),k}` the sorted ``k``-th coordinates.  Sorted in the
    input dtype, averaged in float64 (a float32 sum of huge values overflows).
    """
    num_rows = updates.shape[0]
    check_trim(num_rows, trim_per_tail)
    if trim_per_tail == 0:
        return updates.mean(dim=0, dtype=torch.float64).to(updates.dtype)
    ordered = updates.sort(dim=0).values
    middle = ordered[trim_per_tail : num_rows - trim_per_tail]
    return middle.mean(dim=0, dtype=torch.float64).to(updates.dtype)


def check_trim(num_rows: int, trim_per_tail: int) -> None:
    """``ValueError`` unless ``0 <= trim_per_tail < n/2`` (something is left to average)."""
    if trim_per_tail < 0 or 2 * trim_per_tail >= num_rows:
        raise ValueError(
            f"trimmed mean: trimming {trim_per_tail} per tail from n={num_rows} rows leaves "
            "nothing; need 0 <= trim_per_tail < n/2"
        )


@register("trimmed_mean")
class TrimmedMean(Aggregator):
    r"""Coordinate-wise :math:`\beta`-trimmed mean (Yin et al. 2018, Definition 2):

    .. math::

        \hat g_k = \frac{1}{n - 2t} \sum_{i=t+1}^{n-t} g_{(i),k}, \qquad
        t = \lfloor \beta n \rfloor \ (\text{or } t = f),

    Args:
        num_attackers: ``f``; used as ``t`` when ``trim_by="num_attackers"``.
        beta: fraction trimmed from each tail when ``trim_by="fraction"``, in ``[0, 0.5)``
            (default 0.1, the FLIP baselines' setting).
        trim_by: ``"fraction"`` (``t = floor(beta * n)``) or ``"num_attackers"`` (``t = f``).

    Example:
        ``beta = 0.2`` of 5 values drops 1 per tail (here the outlier 100 and the smallest, 1):

        >>> import torch
        >>> from deepfl.defenses import REGISTRY
        >>> trimmed = REGISTRY["trimmed_mean"](beta=0.2)
        >>> trimmed(torch.tensor([[1.0], [2.0], [3.0], [4.0], [100.0]]))
        tensor([3.])
        >>> trimmed.last_info["trim_per_tail"]
        1
    """

    parameter_constraints: ClassVar[Constraints] = {
        **Aggregator.parameter_constraints,
        "beta": [Interval(float, 0, 0.5, closed="left")],
        "trim_by": [Options(*TRIM_MODES)],
    }
    float64_inputs = (
        False  # order statistics: sort in the input dtype, average in float64 (trimmed_mean)
    )

    def __init__(
        self, num_attackers: int = 0, beta: float = 0.1, trim_by: str = "fraction"
    ) -> None:
        super().__init__(num_attackers)
        self.beta = beta
        self.trim_by = trim_by

    def trim_count(self, num_rows: int, num_attackers: int) -> int:
        """Values dropped from each tail for ``num_rows`` inputs."""
        return _trim_count(self.trim_by, self.beta, num_rows, num_attackers)

    @classmethod
    def check_setting(cls, num_rows: int, num_attackers: int, params: Mapping[str, Any]) -> None:
        """Something must be left after trimming: ``2t < n``."""
        trim = _trim_count(params["trim_by"], params["beta"], num_rows, num_attackers)
        check_trim(num_rows, trim)

    def _aggregate(
        self, updates: Tensor, context: AggregationContext, num_attackers: int
    ) -> AggregationResult:
        trim = self.trim_count(updates.shape[0], num_attackers)
        return AggregationResult(trimmed_mean(updates, trim), None, {"trim_per_tail": trim})


def _trim_count(trim_by: str, beta: float, num_rows: int, num_attackers: int) -> int:
    """``t``: ``f`` when trimming by the number of attackers, else ``floor(beta * n)``."""
    return num_attackers if trim_by == "num_attackers" else count_from_fraction(beta, num_rows)
