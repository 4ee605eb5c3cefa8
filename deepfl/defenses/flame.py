"""FLAME (Nguyen et al., "FLAME: Taming Backdoors in Federated Learning", USENIX Security 2022,
Section 4, Algorithm 1)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from deepfl.defenses._hdbscan import NOISE, hdbscan_labels
from deepfl.defenses.base import (
    LOGGER,
    SEED,
    AggregationContext,
    AggregationResult,
    SeededAggregator,
    coordinate_median,
    cosine_similarity_matrix,
    register,
)
from fldata.params import NON_NEGATIVE_FLOAT, Constraints, Interval, Options

CLUSTER_ON_CHOICES = ("models", "updates")


@register("flame")
class Flame(SeededAggregator):
    r"""FLAME: cluster, clip, add noise (Nguyen et al. 2022, Algorithm 1).

    1. Cosine distances :math:`c_{ij} = 1 - \cos(W_i, W_j)` between the local models
       :math:`W_i = G + g_i` (``cluster_on="models"``, the paper; needs
       ``context.global_params``) or between the updates :math:`g_i` (``"updates"``).
    2. HDBSCAN on :math:`c` with ``min_cluster_size`` :math:`= \lfloor n/2\rfloor + 1`,
       ``min_samples = 1``, ``allow_single_cluster``; keep the largest cluster :math:`L`
       (exact implementation in :mod:`deepfl.defenses._hdbscan`).
    3. :math:`e_i = \lVert W_i - G\rVert = \lVert g_i\rVert` over all ``n`` clients,
       :math:`S = \operatorname{med}_i e_i`; clip :math:`g_i \leftarrow g_i \min(1, S/e_i)`.
    4. :math:`\hat g = \frac{1}{|L|}\sum_{i\in L} g_i + \mathcal N(0, \sigma^2 I)`,
       :math:`\sigma = \lambda S` (:math:`\lambda = 0.001` for image classification).

    The noise is added to the update (the paper adds it to the new global model); the two
    coincide when the engine's server learning rate is 1, otherwise the noise is scaled by it.
    Noise draws use this instance's ``torch.Generator`` (``seed``; saved by ``state_dict``).

    Args:
        num_attackers: ignored (FLAME needs no ``f``).
        noise_lambda: :math:`\lambda` (default 0.001); 0 disables the noise.
        min_cluster_size: HDBSCAN's ``min_cluster_size``; ``None`` means ``n // 2 + 1``.
        cluster_on: ``"models"`` (paper) or ``"updates"``.
        seed: seed of the noise generator.

    Example:
        Three updates pointing one way and one the opposite way (row 3), clustered on the
        updates, without noise: the opposite one is left out, and it would have been clipped
        to the median norm.

        >>> import torch
        >>> from deepfl.defenses import REGISTRY
        >>> updates = torch.tensor([[1.0, 1.0], [1.0, 1.2], [1.2, 1.0], [-5.0, -5.0]])
        >>> flame = REGISTRY["flame"](noise_lambda=0.0, cluster_on="updates")
        >>> flame(updates)
        tensor([1.0667, 1.0667])
        >>> flame.last_accepted
        [0, 1, 2]
        >>> [round(factor, 3) for factor in flame.last_info["clip_factors"]]
        [1.0, 1.0, 1.0, 0.221]
    """

    parameter_constraints: ClassVar[Constraints] = {
        **SeededAggregator.parameter_constraints,
        "noise_lambda": NON_NEGATIVE_FLOAT,
        "min_cluster_size": [Interval(int, 2, None, closed="left"), None],
        "cluster_on": [Options(*CLUSTER_ON_CHOICES)],
        "seed": SEED,
    }

    def __init__(
        self,
        num_attackers: int = 0,
        noise_lambda: float = 0.001,
        min_cluster_size: int | None = None,
        cluster_on: str = "models",
        seed: int = 0,
    ) -> None:
        super().__init__(num_attackers)
        self.noise_lambda = noise_lambda
        self.min_cluster_size = min_cluster_size
        self.cluster_on = cluster_on
        self._seed_generator(seed)

    def _clustered_rows(self, updates: Tensor, context: AggregationContext) -> list[int]:
        num_rows = updates.shape[0]
        if self.cluster_on == "models":
            if context.global_params is None:
                raise ValueError(
                    "flame(cluster_on='models') needs context.global_params; pass it or set "
                    "cluster_on='updates'"
                )
            points = updates + context.global_params.to(device=updates.device, dtype=updates.dtype)
        else:
            points = updates
        cosine_distances = (1.0 - cosine_similarity_matrix(points)).double().cpu().numpy()
        min_size = self.min_cluster_size if self.min_cluster_size is not None else num_rows // 2 + 1
        labels = hdbscan_labels(
            cosine_distances, max(min_size, 2), min_samples=1, allow_single_cluster=True
        )
        clustered = labels[labels != NOISE]
        if clustered.size == 0:
            return []
        largest = int(
            max(set(clustered.tolist()), key=lambda label: (int((labels == label).sum()), -label))
        )
        return [int(i) for i in (labels == largest).nonzero()[0]]

    def _aggregate(
        self, updates: Tensor, context: AggregationContext, num_attackers: int
    ) -> AggregationResult:
        accepted = self._clustered_rows(updates, context)
        norms = updates.norm(dim=1)
        clip_bound = coordinate_median(norms[:, None])[0]
        factors = torch.where(norms > clip_bound, clip_bound / norms, torch.ones_like(norms))
        sigma = self.noise_lambda * float(clip_bound)
        info = {
            "clip_bound": float(clip_bound),
            "noise_sigma": sigma,
            "clip_factors": factors.tolist(),
        }
        if not accepted:
            LOGGER.warning(
                "flame: HDBSCAN labelled every update as noise; returning the zero update"
            )
            return AggregationResult(torch.zeros_like(updates[0]), accepted, info)
        update = (factors[accepted, None] * updates[accepted]).mean(dim=0)
        if sigma > 0:
            # drawn in float32 (the engine's dtype) so the noise stream is the one it always was
            noise = torch.randn(updates.shape[1], generator=self.generator, dtype=torch.float32).to(
                updates.dtype
            )
            update = update + sigma * noise.to(updates.device)
        return AggregationResult(update, accepted, info)
