"""Every registered defense on float32 updates with ONE huge row (1e20, 1e38): a finite aggregate,
and the rules that select or bound rows keep the huge row out of it (float64 arithmetic in
deepfl.defenses.base)."""

from __future__ import annotations

import pytest
import torch

from deepfl.defenses import REGISTRY
from deepfl.defenses.base import AggregationContext, pairwise_squared_distances

NUM_ROWS, DIM, HUGE_ROW = 10, 300, 4
# Rules that drop the huge row: it must not be among the accepted rows.
SELECTING = {"krum", "multikrum", "bulyan_krum", "bulyan_trimmed_mean", "dnc"}
# Rules whose output stays on the benign rows' scale (order statistics, clipping, norm rescaling).
BOUNDED = SELECTING | {"median", "trimmed_mean", "flame", "fltrust"}
# Rules with no magnitude defense by design: the mean, FoolsGold (similarity only) and RFA (10
# Weiszfeld
# steps from the mean cannot walk back from 1e38; each step shrinks the pull by about n - 1).
# For them only finiteness is required; the engine then refuses what would not be finite.
UNBOUNDED = {"fedavg", "foolsgold", "rfa"}


def test_every_registered_defense_is_classified() -> None:
    assert BOUNDED | UNBOUNDED == set(REGISTRY) and not BOUNDED & UNBOUNDED


def _rows(huge: float) -> tuple[torch.Tensor, AggregationContext]:
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(DIM, generator=generator)
    benign = 0.01 * direction + 0.01 * torch.randn(NUM_ROWS, DIM, generator=generator)
    benign[HUGE_ROW] = huge * torch.randn(DIM, generator=generator).sign()
    context = AggregationContext(
        client_ids=list(range(NUM_ROWS)),
        sample_counts=torch.full((NUM_ROWS,), 50.0),
        global_params=torch.zeros(DIM),
        server_update=0.01 * direction,
        output_layer=slice(0, 60),
    )
    return benign.float(), context


@pytest.mark.parametrize("huge", [1e20, 1e38])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_one_huge_float32_row(name: str, huge: float) -> None:
    updates, context = _rows(huge)
    assert bool(torch.isfinite(updates).all())  # finite in float32: the base class does not drop it
    aggregator = REGISTRY[name](num_attackers=1)
    result = aggregator(updates, context)
    assert result.dtype == torch.float32 and bool(torch.isfinite(result).all()), name
    benign_scale = float(updates[torch.arange(NUM_ROWS) != HUGE_ROW].abs().max())
    if name in BOUNDED:
        assert float(result.abs().max()) <= 2 * benign_scale, name
    if name in SELECTING:
        assert HUGE_ROW not in aggregator.last_accepted, name


def test_krum_picks_the_same_row_with_and_without_a_huge_row() -> None:
    """Centring on the smallest-norm row keeps the benign distances exact next to a 1e38 row."""
    updates, context = _rows(1e38)
    benign = torch.arange(NUM_ROWS) != HUGE_ROW
    krum = REGISTRY["krum"](num_attackers=1)
    winner_with = krum(updates, context)
    benign_context = context.subset(benign.nonzero().flatten().tolist())
    winner_without = REGISTRY["krum"](num_attackers=0)(updates[benign], benign_context)
    assert torch.equal(winner_with, winner_without)
    distances = pairwise_squared_distances(updates.double())
    exact = ((updates.double()[:, None, :] - updates.double()[None, :, :]) ** 2).sum(-1)
    torch.testing.assert_close(
        distances[benign][:, benign], exact[benign][:, benign], rtol=1e-9, atol=0
    )
