"""Divide-and-Conquer (Shejwalkar and Houmansadr, "Manipulating the Byzantine: Optimizing Model
Poisoning Attacks and Defenses for Federated Learning", NDSS 2021, Section VI, Algorithm 2)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from deepfl.defenses.base import (
    LOGGER,
    SEED,
    AggregationContext,
    AggregationResult,
    SeededAggregator,
    count_from_fraction,
    register,
)
from fldata.params import NON_NEGATIVE_FLOAT, POSITIVE_INT, Constraints


def dnc_outlier_scores(sampled_updates: Tensor) -> Tensor:
    r"""DnC's scores on a coordinate subsample: :math:`s_i = \langle x_i - \mu, v\rangle^2`, with
    :math:`\mu` the mean row and :math:`v` the top right singular vector of the centred matrix."""
    centred = sampled_updates - sampled_updates.mean(dim=0, keepdim=True)
    top_direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    return (centred @ top_direction).pow(2)


def dnc_kept_rows(num_rows: int, num_attackers: int, filter_frac: float) -> tuple[int, int]:
    """``(removed, kept)`` rows per round, ``floor(c f)`` and ``n - floor(c f)``; ``ValueError``
    unless at least one row is kept."""
    if not math.isfinite(filter_frac * num_attackers):  # c f overflows: nothing would remain
        raise ValueError(
            f"dnc: n - c*f = {num_rows} - inf < 1 rows "
            "would remain; need floor(filter_frac * f) < n"
        )
    removed = count_from_fraction(filter_frac, num_attackers)
    keep = num_rows - removed
    if keep < 1:
        raise ValueError(
            f"dnc: n - c*f = {num_rows} - {removed} < 1 rows "
            "would remain; need floor(filter_frac * f) < n"
        )
    return removed, keep


@register("dnc")
class DnC(SeededAggregator):
    r"""Divide-and-Conquer (Shejwalkar & Houmansadr 2021, Algorithm 2).

    Repeat ``niters`` times: draw ``b`` coordinates without replacement (all when
    :math:`d \le b`), centre the sub-updates, score :math:`s_i = \langle x_i - \mu, v\rangle^2`
    along the top right singular vector :math:`v`, and keep the :math:`n - \lfloor c f\rfloor`
    lowest scores.  The result is the mean of the rows kept in every iteration,

    .. math:: \hat g = \frac{1}{|I|}\sum_{i\in I} g_i, \qquad I = \bigcap_{t=1}^{niters} I_t.

    An empty intersection (possible only for large ``c f``) returns the zero update with a
    warning.  The coordinate draws use this instance's ``torch.Generator`` (seeded by
    ``seed``, saved by ``state_dict``).

    Args:
        num_attackers: ``f``, the assumed number of Byzantine updates.
        niters: number of subsampling rounds (default 5).
        subsample_dim: ``b``, coordinates per round (default 10000).
        filter_frac: ``c``, rows removed per round as a multiple of ``f`` (default 1.0).
        seed: seed of the coordinate draws.

    Example:
        Four honest updates and an outlier (row 4), ``f = 1``: the outlier has the largest
        score along the top singular direction in every round and is removed.

        >>> import torch
        >>> from deepfl.defenses import REGISTRY
        >>> updates = torch.tensor([[1.0, 2.0], [1.2, 1.8], [0.8, 2.2], [1.1, 2.1], [50.0, -50.0]])
        >>> dnc = REGISTRY["dnc"](num_attackers=1)
        >>> dnc(updates)
        tensor([1.0250, 2.0250])
        >>> dnc.last_accepted
        [0, 1, 2, 3]
    """

    parameter_constraints: ClassVar[Constraints] = {
        **SeededAggregator.parameter_constraints,
        "niters": POSITIVE_INT,
        "subsample_dim": POSITIVE_INT,
        "filter_frac": NON_NEGATIVE_FLOAT,
        "seed": SEED,
    }

    def __init__(
        self,
        num_attackers: int = 0,
        niters: int = 5,
        subsample_dim: int = 10000,
        filter_frac: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(num_attackers)
        self.niters = niters
        self.subsample_dim = subsample_dim
        self.filter_frac = filter_frac
        self._seed_generator(seed)

    @classmethod
    def check_setting(cls, num_rows: int, num_attackers: int, params: Mapping[str, Any]) -> None:
        """At least one row must survive each filtering round: ``floor(c f) < n``."""
        dnc_kept_rows(num_rows, num_attackers, params["filter_frac"])

    def _aggregate(
        self, updates: Tensor, context: AggregationContext, num_attackers: int
    ) -> AggregationResult:
        num_rows, dim = updates.shape
        removed, keep = dnc_kept_rows(num_rows, num_attackers, self.filter_frac)
        kept = torch.ones(num_rows, dtype=torch.bool, device=updates.device)
        for _ in range(self.niters):
            if dim > self.subsample_dim:
                coordinates = torch.randperm(dim, generator=self.generator)[: self.subsample_dim]
                sampled = updates[:, coordinates.to(updates.device)]
            else:
                sampled = updates
            scores = dnc_outlier_scores(sampled)
            good = torch.zeros_like(kept)
            good[torch.argsort(scores, stable=True)[:keep]] = True
            kept &= good
        accepted = torch.nonzero(kept).flatten().tolist()
        if not accepted:
            LOGGER.warning(
                "dnc: the kept sets of the %d rounds do not intersect; returning the zero update",
                self.niters,
            )
            return AggregationResult(
                torch.zeros_like(updates[0]), accepted, {"removed_per_round": removed}
            )
        return AggregationResult(
            updates[accepted].mean(dim=0), accepted, {"removed_per_round": removed}
        )
