"""Bulyan (El Mhamdi, Guerraoui and Rouault, "The Hidden Vulnerability of Distributed Learning in
Byzantium", ICML 2018, Section 4, Algorithm 1), with Krum or the trimmed mean as selection rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from deepfl.defenses.base import (
    AggregationContext,
    AggregationResult,
    Aggregator,
    coordinate_median,
    pairwise_squared_distances,
    register,
)
from deepfl.defenses.krum import krum_scores, krum_winner
from deepfl.defenses.trimmed_mean import trimmed_mean


def bulyan_sizes(num_rows: int, num_attackers: int) -> tuple[int, int]:
    r"""``(theta, beta) = (n - 2f, n - 4f)``; ``ValueError`` unless :math:`n \ge 4f + 3`."""
    if num_rows < 4 * num_attackers + 3:
        raise ValueError(
            f"bulyan needs n >= 4f + 3 updates; got n={num_rows}, f={num_attackers} (with "
            f"n={num_rows}, f may be at most {max((num_rows - 3) // 4, 0)})"
            if num_rows >= 3
            else f"bulyan needs n >= 4f + 3 >= 3 updates; got n={num_rows}"
        )
    theta = num_rows - 2 * num_attackers
    return theta, theta - 2 * num_attackers


def select_by_krum(updates: Tensor, num_attackers: int, theta: int) -> list[int]:
    r"""Bulyan's selection stage with Krum: ``theta`` times, run Krum on the remaining set and move
    the winner out.

    Uses one pairwise squared-distance matrix.  On a remaining set of size ``s`` the
    score sums the :math:`\max(s - f - 2, 1)` nearest neighbours (the late rounds of the
    recursion have fewer than ``f + 3`` candidates; the clamp follows Flower's
    ``aggregate_bulyan``).  Ties (the closest pair always ties with one neighbour) are broken
    by :func:`~deepfl.defenses.krum.krum_winner`, independently of row order.
    """
    distances = pairwise_squared_distances(updates)
    remaining = list(range(updates.shape[0]))
    selected: list[int] = []
    for _ in range(theta):
        if len(remaining) == 1:
            winner_position = 0
        else:
            sub = distances[remaining][:, remaining]
            scores = krum_scores(sub, max(len(remaining) - num_attackers - 2, 1))
            winner_position = krum_winner(scores, sub)
        selected.append(remaining.pop(winner_position))
    return selected


def select_by_trimmed_mean(updates: Tensor, num_attackers: int, theta: int) -> list[int]:
    r"""Bulyan's selection stage with the trimmed mean as the rule :math:`A`: ``theta`` times,
    compute the ``f``-trimmed mean of the remaining set and move out the update closest (in
    :math:`\ell_2`) to it.

    El Mhamdi et al. 2018 apply any Byzantine-resilient rule recursively; for a rule that
    does not output one of its inputs, the input closest to its output is selected.
    """
    remaining = list(range(updates.shape[0]))
    selected: list[int] = []
    for _ in range(theta):
        candidates = updates[remaining]
        centre = trimmed_mean(candidates, num_attackers)
        winner_position = int(torch.argmin((candidates - centre).pow(2).sum(dim=1)))
        selected.append(remaining.pop(winner_position))
    return selected


def bulyan_coordinate_stage(selected_updates: Tensor, beta: int) -> Tensor:
    r"""Bulyan's second stage: per coordinate, the mean of the ``beta`` values closest to the
    coordinate median,

    .. math:: \hat g_k = \frac{1}{\beta} \sum_{i \in M_k} g_{i,k}, \qquad
              M_k = \arg\min_{|M| = \beta} \sum_{i \in M} |g_{i,k} - \operatorname{med}_j g_{j,k}|.
    """
    theta = selected_updates.shape[0]
    if not 1 <= beta <= theta:
        raise ValueError(f"bulyan: beta must be in [1, theta={theta}]; got {beta}")
    median = coordinate_median(selected_updates)
    closest = (selected_updates - median).abs().topk(beta, dim=0, largest=False).indices
    return selected_updates.gather(0, closest).mean(dim=0)


class _Bulyan(Aggregator):
    selection_rule = staticmethod(select_by_krum)

    @classmethod
    def check_setting(cls, num_rows: int, num_attackers: int, params: Mapping[str, Any]) -> None:
        """Bulyan needs ``n >= 4f + 3``."""
        bulyan_sizes(num_rows, num_attackers)

    def _aggregate(
        self, updates: Tensor, context: AggregationContext, num_attackers: int
    ) -> AggregationResult:
        theta, beta = bulyan_sizes(updates.shape[0], num_attackers)
        selected = type(self).selection_rule(updates, num_attackers, theta)
        update = bulyan_coordinate_stage(updates[selected], beta)
        return AggregationResult(
            update, sorted(selected), {"selection_order": selected, "theta": theta, "beta": beta}
        )


@register("bulyan_krum")
class BulyanKrum(_Bulyan):
    r"""Bulyan with Krum selection (El Mhamdi et al. 2018, Algorithm 1).

    1. Select :math:`\theta = n - 2f` updates by applying Krum recursively (each winner
       leaves the candidate set; squared distances, :math:`n - f - 2` neighbours, see
       :func:`select_by_krum`).
    2. Per coordinate, average the :math:`\beta = \theta - 2f` selected values closest to
       the coordinate-wise median:
       :math:`\hat g_k = \frac{1}{\beta}\sum_{i\in M_k} g_{i,k}`.

    Requires :math:`n \ge 4f + 3` (``ValueError`` otherwise; e.g. at most ``f = 1`` of 10).
    :math:`\beta = \theta - 2f` as in the paper -- a popular benchmark sets
    :math:`\beta = \theta`, which turns stage 2 into a plain mean; we do not.

    Args:
        num_attackers: ``f``, the assumed number of Byzantine updates.

    Example:
        Six honest updates and an outlier (row 6), ``f = 1``: Krum selects
        :math:`\theta = 5` rows without the outlier, then each coordinate averages the
        :math:`\beta = 3` selected values closest to its median.

        >>> import torch
        >>> from deepfl.defenses import REGISTRY
        >>> updates = torch.tensor([[1.0, 2.0], [1.2, 1.8], [0.8, 2.2], [1.1, 2.1], [0.9, 1.9],
        ...                         [1.0, 2.1], [50.0, -50.0]])
        >>> bulyan = REGISTRY["bulyan_krum"](num_attackers=1)
        >>> bulyan(updates)
        tensor([1.0333, 2.0667])
        >>> bulyan.last_accepted
        [0, 1, 3, 4, 5]
    """

    selection_rule = staticmethod(select_by_krum)


@register("bulyan_trimmed_mean")
class BulyanTrimmedMean(_Bulyan):
    r"""Bulyan with the trimmed mean as selection rule (El Mhamdi et al. 2018, Algorithm 1 with
    :math:`A` = coordinate-wise ``f``-trimmed mean).

    1. :math:`\theta = n - 2f` times: compute the ``f``-trimmed mean of the remaining
       updates and select the remaining update closest to it in :math:`\ell_2`
       (see :func:`select_by_trimmed_mean`).
    2. Per coordinate, average the :math:`\beta = \theta - 2f` selected values closest to
       the coordinate-wise median (same as :class:`BulyanKrum`).

    Requires :math:`n \ge 4f + 3`.

    Args:
        num_attackers: ``f``, the assumed number of Byzantine updates.

    Example:
        Six honest updates and an outlier (row 6), ``f = 1``: the trimmed-mean selection keeps
        :math:`\theta = 5` rows without the outlier.

        >>> import torch
        >>> from deepfl.defenses import REGISTRY
        >>> updates = torch.tensor([[1.0, 2.0], [1.2, 1.8], [0.8, 2.2], [1.1, 2.1], [0.9, 1.9],
        ...                         [1.0, 2.1], [50.0, -50.0]])
        >>> bulyan = REGISTRY["bulyan_trimmed_mean"](num_attackers=1)
        >>> bulyan(updates)
        tensor([0.9667, 2.0667])
        >>> bulyan.last_accepted
        [0, 1, 3, 4, 5]
    """

    selection_rule = staticmethod(select_by_trimmed_mean)
