"""Krum and Multi-Krum (Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant
Gradient Descent", NeurIPS 2017, Section 4 and the Multi-Krum variant of Section 5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from deepfl.defenses.base import (
    LOGGER,
    AggregationContext,
    AggregationResult,
    Aggregator,
    pairwise_squared_distances,
    register,
)
from fldata.params import POSITIVE_INT, Constraints


def krum_num_neighbours(num_rows: int, num_attackers: int) -> int:
    """``n - f - 2``, the neighbour count of Krum's score; ``ValueError`` unless it is at least
    1.
    """
    neighbours = num_rows - num_attackers - 2
    if neighbours < 1:
        raise ValueError(
            f"krum needs n - f - 2 >= 1 neighbours per score, i.e. n >= f + 3; got n={num_rows}, "
            f"f={num_attackers} (Blanchard et al.'s guarantee further needs n > 2f + 2: lower "
            "num_attackers or add clients)"
        )
    return neighbours


def krum_scores(squared_distances: Tensor, num_neighbours: int) -> Tensor:
    r"""Krum scores :math:`s(i) = \sum_{i \to j} \lVert g_i - g_j \rVert^2` over the
    ``num_neighbours`` closest ``j != i``.

    Args:
        squared_distances: ``(n, n)`` squared Euclidean distances.
        num_neighbours: how many nearest other rows enter each score (``n - f - 2`` in the paper).
    """
    others = squared_distances.clone()
    others.fill_diagonal_(float("inf"))
    return others.topk(num_neighbours, dim=1, largest=False).values.sum(dim=1)


def krum_winner(scores: Tensor, squared_distances: Tensor) -> int:
    """Index of the lowest score; near-ties (relative 1e-9) go to the row with the smallest total
    squared distance to all rows, so the choice does not depend on row order (with one neighbour,
    the two rows of the closest pair always tie)."""
    best = scores.min()
    tied = scores <= best + 1e-9 * best.abs()
    if int(tied.sum()) == 1:
        return int(torch.argmin(scores))
    centrality = torch.where(
        tied, squared_distances.sum(dim=1), torch.full_like(scores, float("inf"))
    )
    return int(torch.argmin(centrality))


def guarantee_holds(num_rows: int, num_attackers: int, aggregator: Aggregator) -> bool:
    """Whether ``n > 2f + 2`` (Blanchard et al.'s condition); logs a warning the first time it
    fails.
    """
    holds = num_rows > 2 * num_attackers + 2
    if not holds and not getattr(aggregator, "_warned_guarantee", False):
        aggregator._warned_guarantee = True  # type: ignore[attr-defined]  # a once-only flag on any aggregator
        LOGGER.warning(
            "%s: n=%d <= 2f+2=%d, so Blanchard et al.'s resilience guarantee does not hold (the "
            "rule still runs; warned once)",
            aggregator.name,
            num_rows,
            2 * num_attackers + 2,
        )
    return holds


@register("krum")
class Krum(Aggregator):
    r"""Krum: return the update with the lowest score

    .. math::

        s(i) = \sum_{j \in N_i} \lVert g_i - g_j \rVert_2^2, \qquad
        \hat g = g_{i^*},\ i^* = \arg\min_i s(i),

    where :math:`N_i` are the :math:`n - f - 2` rows closest to :math:`g_i` (``j != i``).
    Squared distances and :math:`n-f-2` neighbours as in Blanchard et al. 2017
    (some published implementations use plain distances or :math:`n-f-1`; we follow the paper).
    With ``f = 0`` the score sums the ``n - 2`` nearest neighbours.  Near-tied scores are
    broken by the total squared distance to all rows (:func:`krum_winner`).

    Requires ``n - f - 2 >= 1`` (``ValueError`` otherwise).  The paper's guarantee needs
    ``n > 2f + 2``; when that fails (e.g. 4 attackers among 10) the rule still runs,
    logs a warning and reports ``last_info["guarantee_holds"] = False``.

    Args:
        num_attackers: ``f``, the assumed number of Byzantine updates.

    Example:
        Four honest updates and an outlier (row 4): Krum returns one honest row as it is.

        >>> import torch
        >>> from deepfl.defenses import REGISTRY
        >>> updates = torch.tensor([[1.0, 2.0], [1.2, 1.8], [0.8, 2.2], [1.1, 2.1], [50.0, -50.0]])
        >>> krum = REGISTRY["krum"](num_attackers=1)
        >>> krum(updates)
        tensor([1., 2.])
        >>> krum.last_accepted
        [0]
    """

    @classmethod
    def check_setting(cls, num_rows: int, num_attackers: int, params: Mapping[str, Any]) -> None:
        """Krum needs ``n - f - 2 >= 1`` neighbours per score."""
        krum_num_neighbours(num_rows, num_attackers)

    def _aggregate(
        self, updates: Tensor, context: AggregationContext, num_attackers: int
    ) -> AggregationResult:
        num_rows = updates.shape[0]
        neighbours = krum_num_neighbours(num_rows, num_attackers)
        holds = guarantee_holds(num_rows, num_attackers, self)
        distances = pairwise_squared_distances(updates)
        scores = krum_scores(distances, neighbours)
        winner = krum_winner(scores, distances)
        return AggregationResult(
            updates[winner].clone(), [winner], {"scores": scores.tolist(), "guarantee_holds": holds}
        )


@register("multikrum")
class MultiKrum(Aggregator):
    r"""Multi-Krum: the mean of the ``m`` updates with the lowest Krum scores (computed once),

    .. math::

        \hat g = \frac{1}{m} \sum_{i \in S_m} g_i, \qquad
        S_m = \text{the } m \text{ lowest } s(i),

    with :math:`s(i)` Krum's score (squared distances, :math:`n-f-2` nearest neighbours;
    Blanchard et al. 2017, Section 5).  Default ``m = n - f``.  ``m = 1`` is Krum and
    ``m = n`` is the plain mean.

    Args:
        num_attackers: ``f``, the assumed number of Byzantine updates.
        num_selected: ``m``, how many updates to average; ``None`` means ``n - f``.

    Example:
        Four honest updates and an outlier (row 4): the ``m = n - f = 4`` best are averaged.

        >>> import torch
        >>> from deepfl.defenses import REGISTRY
        >>> updates = torch.tensor([[1.0, 2.0], [1.2, 1.8], [0.8, 2.2], [1.1, 2.1], [50.0, -50.0]])
        >>> multikrum = REGISTRY["multikrum"](num_attackers=1)
        >>> multikrum(updates)
        tensor([1.0250, 2.0250])
        >>> multikrum.last_accepted
        [0, 1, 2, 3]
    """

    parameter_constraints: ClassVar[Constraints] = {
        **Aggregator.parameter_constraints,
        "num_selected": (*POSITIVE_INT, None),
    }

    def __init__(self, num_attackers: int = 0, num_selected: int | None = None) -> None:
        super().__init__(num_attackers)
        self.num_selected = num_selected

    @classmethod
    def check_setting(cls, num_rows: int, num_attackers: int, params: Mapping[str, Any]) -> None:
        """Krum's ``n - f - 2 >= 1`` and ``m <= n``."""
        krum_num_neighbours(num_rows, num_attackers)
        selected = params["num_selected"]
        if selected is not None and selected > num_rows:
            raise ValueError(
                f"multikrum: num_selected m must be in [1, n={num_rows}]; got m={selected}"
            )

    def _aggregate(
        self, updates: Tensor, context: AggregationContext, num_attackers: int
    ) -> AggregationResult:
        num_rows = updates.shape[0]
        neighbours = krum_num_neighbours(num_rows, num_attackers)
        selected_count = (
            num_rows - num_attackers if self.num_selected is None else self.num_selected
        )
        if not 1 <= selected_count <= num_rows:
            raise ValueError(
                f"multikrum: num_selected m must be in [1, n={num_rows}]; got m={selected_count}"
            )
        holds = guarantee_holds(num_rows, num_attackers, self)
        scores = krum_scores(pairwise_squared_distances(updates), neighbours)
        chosen = torch.argsort(scores, stable=True)[:selected_count].sort().values
        return AggregationResult(
            updates[chosen].mean(dim=0),
            chosen.tolist(),
            {"scores": scores.tolist(), "guarantee_holds": holds},
        )
