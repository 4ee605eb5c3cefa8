"""FedAvg: the plain (optionally sample-weighted) mean of client updates (McMahan et al., AISTATS
2017).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from deepfl.defenses.base import AggregationContext, AggregationResult, Aggregator, register
from fldata.params import BOOLEAN, Constraints


@register("fedavg")
class FedAvg(Aggregator):
    r"""No defense: :math:`\hat g = \sum_i a_i g_i / \sum_i a_i`.

    With ``weighted=False`` (default) :math:`a_i = 1`, the unweighted mean the
    authors' FLIP release applies (``global += (eta/10) * sum_i g_i`` equals a
    server learning rate ``eta`` times this mean).  With ``weighted=True``
    :math:`a_i` is the client's sample count (``context.sample_counts``), the
    weighting of McMahan et al. 2017, Algorithm 1.

    Args:
        num_attackers: ignored (FedAvg assumes no attackers).
        weighted: weight each update by its client's sample count.

    Example:
        The mean, then the sample-weighted mean (3 samples behind the first row, 1 behind
        the second):

        >>> import torch
        >>> from deepfl.defenses import REGISTRY, AggregationContext
        >>> updates = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
        >>> REGISTRY["fedavg"]()(updates)
        tensor([2., 1.])
        >>> counts = AggregationContext(sample_counts=torch.tensor([3.0, 1.0]))
        >>> REGISTRY["fedavg"](weighted=True)(updates, counts)
        tensor([1.5000, 0.5000])
    """

    parameter_constraints: ClassVar[Constraints] = {
        **Aggregator.parameter_constraints,
        "weighted": BOOLEAN,
    }

    def __init__(self, num_attackers: int = 0, weighted: bool = False) -> None:
        super().__init__(num_attackers)
        self.weighted = weighted

    def _aggregate(
        self, updates: Tensor, context: AggregationContext, num_attackers: int
    ) -> AggregationResult:
        accepted = list(range(updates.shape[0]))
        if not self.weighted:
            return AggregationResult(updates.mean(dim=0), accepted)
        if context.sample_counts is None:
            raise ValueError(
                "fedavg(weighted=True) needs context.sample_counts; pass them or set weighted=False"
            )
        weights = context.sample_counts.to(device=updates.device, dtype=updates.dtype)
        total = weights.sum()
        if not bool(total > 0):
            raise ValueError(
                "fedavg(weighted=True): context.sample_counts "
                "sum to 0; at least one client needs samples"
            )
        return AggregationResult(
            (weights / total) @ updates, accepted, {"weights": (weights / total).tolist()}
        )
