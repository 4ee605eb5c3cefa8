"""Coordinate-wise median (Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal
Statistical Rates", ICML 2018, Definition 1)."""

from __future__ import annotations

from torch import Tensor

from deepfl.defenses.base import (
    AggregationContext,
    AggregationResult,
    Aggregator,
    coordinate_median,
    register,
)


@register("median")
class Median(Aggregator):
    r"""Coordinate-wise median: :math:`\hat g_k = \operatorname{med}\{g_{1,k}, \dots, g_{n,k}\}` for
    each coordinate ``k``.

    For even ``n`` the median is the mean of the two middle values (Yin et al. 2018,
    Definition 1; ``torch.median``'s lower-middle value is not used).  Needs no ``f``;
    it tolerates fewer than ``n/2`` Byzantine values per coordinate.

    Args:
        num_attackers: ignored.

    Example:
        One client's huge second coordinate does not move the median:

        >>> import torch
        >>> from deepfl.defenses import REGISTRY
        >>> REGISTRY["median"]()(torch.tensor([[1.0, 2.0], [2.0, 100.0], [3.0, 4.0]]))
        tensor([2., 4.])
    """

    float64_inputs = False  # order statistics: sort in the input dtype (see coordinate_median)

    def _aggregate(
        self, updates: Tensor, context: AggregationContext, num_attackers: int
    ) -> AggregationResult:
        return AggregationResult(coordinate_median(updates))
