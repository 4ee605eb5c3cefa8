"""FoolsGold, FLTrust, DnC and FLAME: independent reference code, hand cases, state and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deepfl.defenses import AggregationContext, make_aggregator

# ----------------------------------------------------------------------------- FoolsGold


def _reference_foolsgold_weights(histories: np.ndarray) -> np.ndarray:
    """The DBA repository's FoolsGold scoring, written with plain loops."""
    n = len(histories)
    cs = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            cs[i, j] = (
                histories[i]
                @ histories[j]
                / (np.linalg.norm(histories[i]) * np.linalg.norm(histories[j]))
            )
        cs[i, i] -= 1.0
    maxcs = cs.max(axis=1)
    for i in range(n):
        for j in range(n):
            if i != j and maxcs[i] < maxcs[j]:
                cs[i, j] *= maxcs[i] / maxcs[j]
    wv = np.clip(1.0 - cs.max(axis=1), 0.0, 1.0)
    wv = wv / wv.max()
    wv[wv == 1] = 0.99
    with np.errstate(divide="ignore"):
        wv = np.log(wv / (1 - wv)) + 0.5
    wv[(np.isinf(wv) + wv) > 1] = 1
    wv[wv < 0] = 0
    return wv


def _sybil_round(generator: torch.Generator, dim: int = 30) -> torch.Tensor:
    honest = torch.randn(6, dim, generator=generator, dtype=torch.float64)
    sybil_direction = torch.randn(dim, generator=generator, dtype=torch.float64)
    sybils = sybil_direction + 0.01 * torch.randn(3, dim, generator=generator, dtype=torch.float64)
    return torch.cat([honest, sybils])


def test_foolsgold_matches_reference_and_suppresses_sybils() -> None:
    generator = torch.Generator().manual_seed(0)
    ids = [5, 9, 2, 7, 11, 3, 40, 41, 42]
    context = AggregationContext(client_ids=ids)
    foolsgold = make_aggregator("foolsgold", features="all")
    rounds = [_sybil_round(generator) for _ in range(2)]
    for updates in rounds:
        result = foolsgold(updates, context)
    histories = (rounds[0] + rounds[1]).numpy()
    expected_weights = _reference_foolsgold_weights(histories)
    np.testing.assert_allclose(foolsgold.last_info["weights"], expected_weights, atol=1e-12)
    assert max(expected_weights[6:]) < 0.05 < min(expected_weights[:6])
    expected = (expected_weights @ rounds[1].numpy()) / expected_weights.sum()
    np.testing.assert_allclose(result.numpy(), expected, atol=1e-12)
    by_count = make_aggregator(
        "foolsgold", features="all", use_history=False, normalization="num_clients"
    )
    np.testing.assert_allclose(
        by_count(rounds[1]).numpy(),
        _reference_foolsgold_weights(rounds[1].numpy()) @ rounds[1].numpy() / 9,
        atol=1e-12,
    )


def test_foolsgold_output_layer_features_and_state_roundtrip() -> None:
    generator = torch.Generator().manual_seed(1)
    rounds = [torch.randn(5, 12, generator=generator, dtype=torch.float64) for _ in range(3)]
    context = AggregationContext(client_ids=[0, 1, 2, 3, 4], output_layer=slice(8, 12))
    straight = make_aggregator("foolsgold")
    outputs = [straight(r, context) for r in rounds]
    expected_weights = _reference_foolsgold_weights(sum(r[:, 8:] for r in rounds).numpy())
    np.testing.assert_allclose(straight.last_info["weights"], expected_weights, atol=1e-12)
    first = make_aggregator("foolsgold")
    first(rounds[0], context)
    first(rounds[1], context)
    resumed = make_aggregator("foolsgold")
    resumed.load_state_dict(first.state_dict())
    torch.testing.assert_close(resumed(rounds[2], context), outputs[2])
    with pytest.raises(ValueError, match="key 'history'"):
        resumed.load_state_dict({})


def test_foolsgold_identical_clients_get_zero_weight() -> None:
    updates = torch.ones(4, 3)
    foolsgold = make_aggregator("foolsgold", features="all")
    assert torch.equal(foolsgold(updates), torch.zeros(3))
    assert foolsgold.last_accepted == []


# ----------------------------------------------------------------------------- FLTrust


def test_fltrust_by_hand() -> None:
    server = torch.tensor([1.0, 0.0], dtype=torch.float64)
    updates = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    # trust scores 1, 0, 0, 1/sqrt(2); rescaled rows [1, 0] and [1, 1] / sqrt(2)
    s = 1.0 / math.sqrt(2.0)
    expected = torch.tensor([1.0 + s * s, s * s], dtype=torch.float64) / (1.0 + s)
    fltrust = make_aggregator("fltrust")
    torch.testing.assert_close(fltrust(updates, AggregationContext(server_update=server)), expected)
    assert fltrust.last_accepted == [0, 3]
    assert fltrust.last_info["trust_scores"] == pytest.approx([1.0, 0.0, 0.0, s])


def test_fltrust_needs_server_update_and_handles_zero_trust() -> None:
    with pytest.raises(ValueError, match="needs context.server_update"):
        make_aggregator("fltrust")(torch.randn(3, 2))
    opposite = make_aggregator("fltrust")(
        -torch.ones(3, 2), AggregationContext(server_update=torch.ones(2))
    )
    assert torch.equal(opposite, torch.zeros(2))


# ----------------------------------------------------------------------------- DnC


def _reference_dnc(points: np.ndarray, f: int) -> list[int]:
    centred = points - points.mean(axis=0)
    direction = np.linalg.svd(centred)[2][0]
    scores = (centred @ direction) ** 2
    return sorted(np.argsort(scores)[: len(points) - f].tolist())


def test_dnc_matches_reference_without_subsampling() -> None:
    generator = torch.Generator().manual_seed(2)
    updates = torch.randn(10, 15, generator=generator, dtype=torch.float64)
    updates[[1, 4]] += 2.5 * torch.randn(15, generator=generator, dtype=torch.float64)  # same shift
    dnc = make_aggregator("dnc", 2)
    result = dnc(updates)
    kept = _reference_dnc(updates.numpy(), 2)
    assert dnc.last_accepted == kept
    assert 1 not in kept and 4 not in kept
    torch.testing.assert_close(result, updates[kept].mean(dim=0))


def test_dnc_subsampling_is_seeded_and_resumable() -> None:
    generator = torch.Generator().manual_seed(3)
    rounds = [torch.randn(8, 500, generator=generator) for _ in range(2)]
    a = make_aggregator("dnc", 2, subsample_dim=50, seed=7)
    outputs = [a(r) for r in rounds]
    b = make_aggregator("dnc", 2, subsample_dim=50, seed=7)
    b(rounds[0])
    c = make_aggregator("dnc", 2, subsample_dim=50, seed=7)
    c.load_state_dict(b.state_dict())
    torch.testing.assert_close(c(rounds[1]), outputs[1])


def test_dnc_removing_everything_raises() -> None:
    with pytest.raises(ValueError, match="n - c\\*f = 3 - 3 < 1"):
        make_aggregator("dnc", 3)(torch.randn(3, 4))


# ----------------------------------------------------------------------------- FLAME


def _flame_case(dtype: torch.dtype) -> tuple[torch.Tensor, AggregationContext]:
    """7 benign updates in two nearby tight sub-groups (4 + 3, so HDBSCAN's root splits them evenly
    and all 7 fall out together), at different scales (cosine distance ignores scale; clipping does
    not), and 3 attackers pointing elsewhere."""
    generator = torch.Generator().manual_seed(4)
    direction = torch.randn(200, generator=generator, dtype=dtype)
    shift = 0.3 * torch.randn(200, generator=generator, dtype=dtype)
    centres = torch.stack([direction] * 4 + [direction + shift] * 3)
    benign = centres + 0.01 * torch.randn(7, 200, generator=generator, dtype=dtype)
    benign = benign * torch.linspace(0.5, 2.0, 7, dtype=dtype)[:, None]
    backdoor = 5.0 * torch.randn(200, generator=generator, dtype=dtype) + 0.5 * torch.randn(
        3, 200, generator=generator, dtype=dtype
    )
    updates = torch.cat(
        [backdoor[:1], benign[:4], backdoor[1:], benign[4:]]
    )  # attackers at rows 0, 5, 6
    return updates, AggregationContext(global_params=torch.zeros(200, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_flame_keeps_benign_cluster_and_clips_to_median_norm(dtype: torch.dtype) -> None:
    updates, context = _flame_case(dtype)
    flame = make_aggregator("flame", noise_lambda=0.0)
    result = flame(updates, context)
    benign_rows = [1, 2, 3, 4, 7, 8, 9]
    assert flame.last_accepted == benign_rows
    norms = updates.norm(dim=1)
    bound = norms.sort().values[4:6].mean()  # median of 10 norms
    expected = torch.stack(
        [updates[i] * min(1.0, float(bound / norms[i])) for i in benign_rows]
    ).mean(dim=0)
    torch.testing.assert_close(result, expected)
    assert flame.last_info["clip_bound"] == pytest.approx(float(bound), rel=1e-6)


def test_flame_noise_scale_and_errors() -> None:
    generator = torch.Generator().manual_seed(5)
    updates = torch.randn(6, 20000, generator=generator, dtype=torch.float64)
    context = AggregationContext(global_params=torch.zeros(20000, dtype=torch.float64))
    noisy = make_aggregator("flame", noise_lambda=0.01)(updates, context)
    clean = make_aggregator("flame", noise_lambda=0.0)(updates, context)
    sigma = 0.01 * float(
        updates.norm(dim=1).median()
    )  # n even: torch's lower median differs slightly
    assert float((noisy - clean).std()) == pytest.approx(sigma, rel=0.05)
    with pytest.raises(ValueError, match="needs context.global_params"):
        make_aggregator("flame")(updates)
    for params in ({"noise_lambda": -1.0}, {"min_cluster_size": 1}, {"cluster_on": "gradients"}):
        with pytest.raises(ValueError, match="flame:"):
            make_aggregator("flame", **params)
