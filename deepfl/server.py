"""Server side: build the aggregation defense and apply its output to the global model.

Global update rules (ALGORITHMS.md "Federated setup", ``server.rule``):
- ``global-lr`` (released code): G <- G + eta_g * agg(Delta_1..Delta_n); with fedavg,
  agg = mean, i.e. G += eta_g / n * sum_i Delta_i (eta_g = 0.1).
- ``sample-weighted`` (plain FedAvg, McMahan et al. 2017): G <- G + agg(...), the aggregator
  weighting rows by ``context.sample_counts`` where it supports that (constructor parameter
  ``weighted``; set automatically unless given in ``defense.params``).
Clean pre-training uses ``server.pretrain_lr`` instead (see server_learning_rate).
The state vector includes BatchNorm running statistics (deepfl.flat).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from deepfl.config import ExperimentConfig
from deepfl.defenses import REGISTRY
from deepfl.defenses.base import AggregationContext, Aggregator


def build_aggregator(
    cfg: ExperimentConfig, name: str, params: dict[str, Any], num_attackers: int
) -> Aggregator:
    """``REGISTRY[name](num_attackers=f, **params)`` with ``weighted`` filled in from
    ``server.rule``.
    """
    cls = REGISTRY[name]
    params = dict(params)
    if "weighted" in inspect.signature(cls.__init__).parameters and "weighted" not in params:
        params["weighted"] = cfg.server.rule == "sample-weighted"
    try:
        return cls(num_attackers=num_attackers, **params)
    except TypeError as error:
        raise ValueError(f"defense.params for {name!r}: {error}") from error


def server_learning_rate(cfg: ExperimentConfig, phase: str) -> float:
    """eta_g of G <- G + eta_g * agg(updates).

    Attack phase: ``server.global_lr`` under the "global-lr" rule, 1 for sample-weighted FedAvg.
    Clean pre-training: ``server.pretrain_lr`` (default 1, so few rounds reach a converged model;
    the released code instead starts the attack from a converged checkpoint).
    """
    if phase == "pretrain":
        return cfg.server.pretrain_lr
    return cfg.server.global_lr if cfg.server.rule == "global-lr" else 1.0


# per-update diagnostics an aggregator may put in ``last_info`` (sample-weighted FedAvg, FoolsGold
# and RFA weights, FLTrust trust scores, FLAME clip factors), recorded in the round's metrics row
PER_CLIENT_DIAGNOSTICS = ("weights", "trust_scores", "clip_factors")


def per_client_diagnostics(info: dict[str, Any], num_clients: int) -> dict[str, list[float | None]]:
    r"""The entries of :data:`PER_CLIENT_DIAGNOSTICS` in an aggregator's ``last_info``, each as a
    list aligned with the round's ``num_clients`` updates (``None`` for an update excluded as
    non-finite), rounded to 4 decimals.

    With these a run's ``metrics.jsonl`` shows each client's share of a weighted rule,
    :math:`a_i / \sum_j a_j` (e.g. FoolsGold, Fung et al. 2020), round by round.
    """
    excluded = set(info.get("excluded_nonfinite", []))
    kept = [row for row in range(num_clients) if row not in excluded]
    diagnostics: dict[str, list[float | None]] = {}
    for key in PER_CLIENT_DIAGNOSTICS:
        values = info.get(key)
        if not isinstance(values, list) or len(values) != len(kept):
            continue
        aligned: list[float | None] = [None] * num_clients
        for row, value in zip(kept, values, strict=True):
            aligned[row] = round(float(value), 4)
        diagnostics[key] = aligned
    return diagnostics


def aggregate(
    aggregator: Aggregator,
    updates: torch.Tensor,
    context: AggregationContext,
    client_ids: list[int],
) -> tuple[torch.Tensor, list[int]]:
    """Aggregated update (d,) and the ids of the clients whose updates the defense kept."""
    result = aggregator(updates, context=context)
    kept = aggregator.last_accepted
    accepted = list(client_ids) if kept is None else [client_ids[i] for i in kept]
    return result, accepted
