"""FLTrust (Cao, Fang, Liu and Gong, "FLTrust: Byzantine-robust Federated Learning via Trust
Bootstrapping", NDSS 2021, Section IV, Algorithm 1 and Eq. (1)-(3))."""

from __future__ import annotations

import torch
from torch import Tensor

from deepfl.defenses.base import LOGGER, AggregationContext, AggregationResult, Aggregator, register


@register("fltrust")
class FLTrust(Aggregator):
    r"""FLTrust: trust scores from the server's root-set update :math:`g_0`
    (``context.server_update``),

    .. math::
        TS_i = \operatorname{ReLU}\!\left(\frac{\langle g_i, g_0\rangle}{\lVert g_i\rVert \lVert
        g_0\rVert}\right), \qquad \bar g_i = \frac{\lVert g_0\rVert}{\lVert g_i\rVert} g_i, \qquad
        \hat g = \frac{\sum_i TS_i\, \bar g_i}{\sum_i TS_i}

    (Cao et al. 2021, Eq. (1)-(3)).  A zero update gets :math:`TS_i = 0`; all scores 0
    returns the zero update (the global model is kept).  The engine computes :math:`g_0`
    by training on a 100-sample root set removed from the clients' data
    (``needs_server_update = True``).

    Args:
        num_attackers: ignored (FLTrust needs no ``f``).

    Example:
        The server's update is (1, 1): a client in its direction gets trust 1, one at
        45 degrees 0.707, the opposite one 0; each kept update is rescaled to the server's norm.

        >>> import torch
        >>> from deepfl.defenses import REGISTRY, AggregationContext
        >>> updates = torch.tensor([[2.0, 2.0], [1.0, 0.0], [-3.0, -3.0]])
        >>> fltrust = REGISTRY["fltrust"]()
        >>> fltrust(updates, AggregationContext(server_update=torch.tensor([1.0, 1.0])))
        tensor([1.1716, 0.5858])
        >>> [round(score, 3) for score in fltrust.last_info["trust_scores"]]
        [1.0, 0.707, 0.0]
    """

    needs_server_update = True

    def _aggregate(
        self, updates: Tensor, context: AggregationContext, num_attackers: int
    ) -> AggregationResult:
        if context.server_update is None:
            raise ValueError(
                "fltrust needs context.server_update (the server's root-set update g_0); the "
                "engine computes it when the defense class has needs_server_update = True"
            )
        server_update = context.server_update.to(device=updates.device, dtype=updates.dtype)
        server_norm = server_update.norm()
        norms = updates.norm(dim=1)
        valid = norms > 0
        safe_norms = torch.where(valid, norms, torch.ones_like(norms))
        if bool(server_norm > 0):
            cosine = (updates @ server_update) / (safe_norms * server_norm)
        else:
            LOGGER.warning("fltrust: the server update g_0 is zero; every trust score is 0")
            cosine = torch.zeros_like(norms)
        trust = torch.where(valid, torch.relu(cosine), torch.zeros_like(cosine))
        info = {"trust_scores": trust.tolist()}
        accepted = torch.nonzero(trust > 0).flatten().tolist()
        if not bool(trust.sum() > 0):
            LOGGER.warning("fltrust: every trust score is 0; returning the zero update")
            return AggregationResult(torch.zeros_like(server_update), accepted, info)
        rescaled_weights = trust * server_norm / safe_norms
        update = (rescaled_weights @ updates) / trust.sum()
        return AggregationResult(update, accepted, info)
