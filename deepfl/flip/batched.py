"""Batched FLIP: the inversions of every benign client of a round in one optimisation per stage
(issue 13 item 2).

The benign clients of a round all receive the same global model, so their inversion problems
differ only in the data they flip: the clients' local pools are concatenated and every request
names its client's rows (``InversionRequest.pool``). Each client still walks its own two stages
(:class:`~.plan.ClientRound`): all clients' universal requests (warm-up or ``fliplab``'s
refresh) are solved together, one optimisation per distinct step count, then all their pair
requests. Each problem keeps its own Neural-Cleanse cost schedule, Adam moments and mini-batch
sampler (seeded per problem), so its trajectory is the one it has alone up to float round-off
of the larger forward pass; the per-client path (:func:`.plan.plan_hardening`) stays the
reference (tests/deepfl/test_flip_batched.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from deepfl.client import LocalData, RoundContext
from fldata.triggers import Trigger

from .config import FlipConfig
from .inversion import InversionRequest, InversionResult
from .plan import ClientRound, HardeningPlan, run_inversions

__all__ = ["plan_round"]


def plan_round(
    config: FlipConfig,
    model: torch.nn.Module,
    clients: Sequence[tuple[LocalData, dict, RoundContext]],
    true_trigger: Trigger | None = None,
    batch_steps: Sequence[int] | None = None,
) -> list[HardeningPlan]:
    """The :class:`HardeningPlan` of every ``(data, state, ctx)`` client, inversions batched.

    ``batch_steps[i]`` sizes client ``i``'s ``pairs_per_round=None`` (its hardening's steps)."""
    steps = list(batch_steps) if batch_steps is not None else [1] * len(clients)
    planners = [
        ClientRound(config, data, state, ctx, true_trigger, n)
        for (data, state, ctx), n in zip(clients, steps, strict=True)
    ]
    if not planners:
        return []
    num_classes = int(clients[0][2].num_classes)
    pool = _ConcatenatedPool([planner.data for planner in planners])
    active = [p for p in planners if p.stage == "universal"]  # oracle clients have no stages
    universal = _invert_grouped(
        config,
        model,
        pool,
        active,
        [p.universal_requests() for p in active],
        [p.universal_steps() for p in active],
        num_classes,
    )
    for planner, candidates in zip(active, universal, strict=True):
        planner.take_universal(candidates)
    pairs = _invert_grouped(
        config,
        model,
        pool,
        active,
        [p.pair_requests() for p in active],
        [config.pair_steps] * len(active),
        num_classes,
    )
    for planner, candidates in zip(active, pairs, strict=True):
        planner.take_pairs(candidates)
    return [planner.plan for planner in planners]


class _ConcatenatedPool:
    """The clients' images / labels concatenated; ``offsets[client]`` is where its rows start."""

    def __init__(self, datas: Sequence[LocalData]) -> None:
        self.datas = list(datas)
        self.offsets: dict[int, int] = {}
        start = 0
        for data in self.datas:
            self.offsets[id(data)] = start
            start += len(data)
        self._images: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None

    @property
    def images(self) -> torch.Tensor:
        if self._images is None:
            self._images = torch.cat([data.images for data in self.datas])
        return self._images

    @property
    def labels(self) -> torch.Tensor:
        if self._labels is None:
            self._labels = torch.cat([data.labels for data in self.datas])
        return self._labels

    def place(self, planner: ClientRound, request: InversionRequest) -> InversionRequest:
        """``request`` restricted to ``planner``'s rows of the concatenated pool."""
        start = self.offsets[id(planner.data)]
        return dataclasses.replace(request, pool=(start, start + len(planner.data)))


def _invert_grouped(
    config: FlipConfig,
    model: torch.nn.Module,
    pool: _ConcatenatedPool,
    planners: Sequence[ClientRound],
    requests: Sequence[list[InversionRequest]],
    steps: Sequence[int],
    num_classes: int,
) -> list[list[list[InversionResult]]]:
    """Every client's requests solved in one optimisation per distinct step count; the
    candidates handed back per client, in its requests' order."""
    out: list[list[list[InversionResult]]] = [[] for _ in planners]
    for step_count in sorted(set(steps)):
        members = [i for i, n in enumerate(steps) if n == step_count and requests[i]]
        placed = [pool.place(planners[i], request) for i in members for request in requests[i]]
        if not placed:
            continue
        candidates = run_inversions(
            config, model, pool.images, pool.labels, placed, step_count, num_classes
        )
        start = 0
        for i in members:
            out[i] = candidates[start : start + len(requests[i])]
            start += len(requests[i])
    return out
