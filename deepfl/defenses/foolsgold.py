"""FoolsGold (Fung, Yoon and Beschastnikh, "The Limitations of Federated Learning in Sybil
Settings", RAID 2020, Algorithm 1)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from deepfl.defenses.base import (
    LOGGER,
    AggregationContext,
    AggregationResult,
    Aggregator,
    cosine_similarity_matrix,
    register,
)
from fldata.params import BOOLEAN, Constraints, Options

FEATURE_CHOICES = ("output_layer", "all")
NORMALIZATION_CHOICES = ("weight_sum", "num_clients")


def foolsgold_weights(histories: Tensor) -> tuple[Tensor, Tensor]:
    r"""FoolsGold's learning-rate vector :math:`\alpha` from the clients' history vectors ``(n,
    k)``.

    .. math::
        cs_{ij} &= \cos(H_i, H_j) - [i = j], \qquad v_i = \max_j cs_{ij} \\
        cs_{ij} &\leftarrow cs_{ij}\, v_i / v_j \quad \text{if } v_i < v_j
            \ (\text{pardoning}; \text{only for } v_j > 0) \\
        \alpha_i &= 1 - \max_j cs_{ij} \text{ clipped to } [0,1], \qquad
            \alpha \leftarrow \alpha / \max_j \alpha_j, \ \alpha_i = 1 \mapsto 0.99 \\
        \alpha_i &\leftarrow
            \operatorname{clip}_{[0,1]}\bigl(\ln(\alpha_i / (1 - \alpha_i)) + 0.5\bigr)

    (Fung et al. 2020, Algorithm 1, confidence :math:`\kappa = 1`).  :math:`1 - \max_j cs_{ij}`
    below 10 machine epsilons counts as 0 (an exact twin up to rounding).  When every
    :math:`\alpha_i` is 0 before rescaling (every client has an exact twin), all weights are 0.

    Returns:
        ``(alpha, max_similarity)``, both ``(n,)``.
    """
    num_rows = histories.shape[0]
    similarity = cosine_similarity_matrix(histories)
    similarity = similarity - torch.eye(num_rows, dtype=similarity.dtype, device=similarity.device)
    max_similarity = similarity.max(dim=1).values
    own, other = max_similarity[:, None], max_similarity[None, :]
    pardon = (own < other) & (other > 0)
    safe_other = torch.where(other > 0, other, torch.ones_like(other))
    similarity = torch.where(pardon, similarity * own / safe_other, similarity)
    alpha = (1.0 - similarity.max(dim=1).values).clamp(0.0, 1.0)
    # cosine similarities within rounding of 1 are exact twins: 1 - cos below ~10 eps counts as 0
    alpha = torch.where(alpha <= 10 * torch.finfo(alpha.dtype).eps, torch.zeros_like(alpha), alpha)
    top = alpha.max()
    if not bool(top > 0):
        return torch.zeros_like(alpha), max_similarity
    alpha = alpha / top
    alpha = torch.where(alpha == 1.0, torch.full_like(alpha, 0.99), alpha)
    alpha = (torch.log(alpha / (1.0 - alpha)) + 0.5).nan_to_num(nan=0.0).clamp(0.0, 1.0)
    return alpha, max_similarity


@register("foolsgold")
class FoolsGold(Aggregator):
    r"""FoolsGold: down-weight clients whose update histories are too similar (Fung et al. 2020,
    Algorithm 1).

    Each client's history :math:`H_i = \sum_{t} \Delta_{i,t}` (restricted to the features
    below) is updated with this round's update, the weights :math:`\alpha_i` come from
    :func:`foolsgold_weights`, and the result is the weighted average

    .. math:: \hat g = \sum_i \alpha_i g_i \Big/ \sum_i \alpha_i

    (``normalization="weight_sum"``, ALGORITHMS.md) or :math:`\frac1n\sum_i \alpha_i g_i`
    (``normalization="num_clients"``, the DBA code the FLIP release builds on).  All
    weights 0 gives the zero update (the global model is kept).

    Under ``"weight_sum"`` a client's share of the round's step is :math:`\alpha_i / \sum_j
    \alpha_j`, so a round in which many clients get weight 0 gives the others, a one-time sender
    included (its history is unlike anyone's), a larger share than FedAvg's :math:`1/n`: a
    boosted single-shot update is then amplified, not diluted (``results/reasons.json``, MNIST
    single-shot FoolsGold; the weights are in each round's ``aggregation`` entry of
    metrics.jsonl).

    Histories are keyed by ``context.client_ids``; without ids, each call uses only the
    current updates (no memory).  Save and restore them with ``state_dict`` /
    ``load_state_dict``.

    Args:
        num_attackers: ignored (FoolsGold needs no ``f``).
        features: ``"output_layer"`` (default, DBA/FLIP lineage: the coordinates
            ``context.output_layer``; falls back to all coordinates with a warning when the
            context has none) or ``"all"``.
        normalization: ``"weight_sum"`` or ``"num_clients"``.
        use_history: accumulate updates over rounds (paper) or use the current round only.

    Example:
        Two sybils send the same update (rows 0 and 1): both get weight 0, and the honest
        client's update is the result.

        >>> import torch
        >>> from deepfl.defenses import REGISTRY
        >>> foolsgold = REGISTRY["foolsgold"](features="all")
        >>> foolsgold(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
        tensor([0., 1.])
        >>> foolsgold.last_info["weights"]
        [0.0, 0.0, 1.0]
    """

    parameter_constraints: ClassVar[Constraints] = {
        **Aggregator.parameter_constraints,
        "features": [Options(*FEATURE_CHOICES)],
        "normalization": [Options(*NORMALIZATION_CHOICES)],
        "use_history": BOOLEAN,
    }

    def __init__(
        self,
        num_attackers: int = 0,
        features: str = "output_layer",
        normalization: str = "weight_sum",
        use_history: bool = True,
    ) -> None:
        super().__init__(num_attackers)
        self.features = features
        self.normalization = normalization
        self.use_history = use_history
        self.history: dict[int, Tensor] = {}
        self._warned_features = False

    def _feature_rows(self, updates: Tensor, context: AggregationContext) -> Tensor:
        if self.features == "all":
            return updates
        if context.output_layer is None:
            if not self._warned_features:
                self._warned_features = True
                LOGGER.warning(
                    "foolsgold: context.output_layer is missing; using all coordinates as features"
                )
            return updates
        return updates[:, context.output_layer]

    def _histories(self, features: Tensor, context: AggregationContext) -> Tensor:
        if not self.use_history or context.client_ids is None:
            return features
        rows = []
        for client_id, row in zip(context.client_ids, features, strict=True):
            previous = self.history.get(int(client_id))
            if previous is not None and previous.shape == row.shape:
                summed = previous.to(device=row.device, dtype=row.dtype) + row
            else:
                summed = row.clone()
            self.history[int(client_id)] = summed
            rows.append(summed)
        return torch.stack(rows)

    def _aggregate(
        self, updates: Tensor, context: AggregationContext, num_attackers: int
    ) -> AggregationResult:
        histories = self._histories(self._feature_rows(updates, context), context)
        alpha, max_similarity = foolsgold_weights(histories)
        denominator = (
            alpha.sum()
            if self.normalization == "weight_sum"
            else torch.tensor(float(updates.shape[0]))
        )
        if bool(alpha.sum() > 0):
            update = (alpha @ updates) / denominator.to(updates)
        else:
            LOGGER.warning("foolsgold: every client got weight 0; returning the zero update")
            update = torch.zeros_like(updates[0])
        accepted = torch.nonzero(alpha > 0).flatten().tolist()
        info = {"weights": alpha.tolist(), "max_similarity": max_similarity.tolist()}
        return AggregationResult(update, accepted, info)

    def state_dict(self) -> dict[str, Any]:
        """``{"history": {client_id: cpu tensor}}``."""
        return {"history": {cid: h.detach().cpu().clone() for cid, h in self.history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the per-client histories saved by :meth:`state_dict`."""
        if set(state) != {"history"}:
            raise ValueError(
                f"foolsgold: state must have exactly the key 'history'; got {sorted(state)}"
            )
        self.history = {int(cid): torch.as_tensor(h).clone() for cid, h in state["history"].items()}
