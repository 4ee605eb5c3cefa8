"""Krum, Multi-Krum, Bulyan, median, trimmed mean and RFA: hand-computed cases, independent
reference code, robustness to arbitrarily large outliers and precondition errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from deepfl.defenses import AggregationContext, make_aggregator
from deepfl.defenses.bulyan import bulyan_coordinate_stage
from deepfl.defenses.krum import krum_scores


def _column(values: list[float], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)[:, None]


def _honest_and_outliers(
    num_honest: int, num_outliers: int, dim: int, seed: int, dtype: torch.dtype
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    honest = torch.randn(num_honest, dim, generator=generator, dtype=dtype)
    outliers = 1e6 * (1.0 + torch.rand(num_outliers, dim, generator=generator, dtype=dtype))
    outliers[::2] *= -1.0
    return torch.cat([outliers, honest])  # outliers first: rows 0..f-1


# ----------------------------------------------------------------------------- Krum / Multi-Krum


def test_krum_scores_by_hand() -> None:
    # points 0, 1, 3, 10 and f = 0: n - 2 = 2 nearest squared distances.
    # 0: 1 + 9 = 10;  1: 1 + 4 = 5;  3: 4 + 9 = 13;  10: 49 + 81 = 130.
    points = _column([0.0, 1.0, 3.0, 10.0])
    distances = (points - points.T) ** 2
    torch.testing.assert_close(
        krum_scores(distances, 2), torch.tensor([10.0, 5.0, 13.0, 130.0], dtype=torch.float64)
    )
    krum = make_aggregator("krum", 0)
    torch.testing.assert_close(krum(points), torch.tensor([1.0], dtype=torch.float64))
    assert krum.last_accepted == [1]


def test_krum_with_no_attackers_uses_n_minus_2_neighbours() -> None:
    # points 0, 1, 2, 2.5, 100 with 3 = n - 2 neighbours: scores 11.25, 4.25, 5.25, 8.75, ... -> row
    # 1.
    # With n - 1 = 4 neighbours the far point would be counted and row 2 would win instead.
    points = _column([0.0, 1.0, 2.0, 2.5, 100.0])
    krum = make_aggregator("krum", 0)
    assert float(krum(points)) == 1.0
    assert krum.last_info["scores"][:4] == pytest.approx([11.25, 4.25, 5.25, 8.75])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_krum_and_multikrum_ignore_large_outliers(dtype: torch.dtype) -> None:
    num_attackers, num_honest = 3, 8  # n = 11 > 2f + 2
    updates = _honest_and_outliers(num_honest, num_attackers, 20, seed=0, dtype=dtype)
    honest = updates[num_attackers:]
    krum = make_aggregator("krum", num_attackers)
    chosen = krum(updates)
    assert krum.last_accepted[0] >= num_attackers
    assert any(torch.equal(chosen, row) for row in honest)
    multikrum = make_aggregator("multikrum", num_attackers)
    result = multikrum(updates)
    assert len(multikrum.last_accepted) == num_honest  # m = n - f
    assert min(multikrum.last_accepted) >= num_attackers
    torch.testing.assert_close(result, updates[multikrum.last_accepted].mean(dim=0))


def test_multikrum_selects_the_m_lowest_scores() -> None:
    points = _column([0.0, 1.0, 2.0, 2.5, 100.0])
    multikrum = make_aggregator(
        "multikrum", 0, num_selected=2
    )  # lowest scores: rows 1 (4.25), 2 (5.25)
    assert float(multikrum(points)) == 1.5
    assert multikrum.last_accepted == [1, 2]
    torch.testing.assert_close(
        make_aggregator("multikrum", 0, num_selected=5)(points), points.mean(dim=0)
    )


def test_krum_preconditions() -> None:
    with pytest.raises(ValueError, match="n >= f \\+ 3"):
        make_aggregator("krum", 1)(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="n >= f \\+ 3"):
        make_aggregator("krum", 0)(torch.zeros(2, 2))
    with pytest.raises(
        ValueError, match=r"num_selected must be an int in \[1, inf\) or None; got 0"
    ):
        make_aggregator("multikrum", 1, num_selected=0)
    with pytest.raises(ValueError, match=r"num_selected m must be in \[1, n=5\]"):
        make_aggregator("multikrum", 1, num_selected=6)(torch.randn(5, 2))
    krum = make_aggregator("krum", 4)  # 10 clients, 4 attackers: runs, guarantee void
    krum(torch.randn(10, 3))
    assert krum.last_info["guarantee_holds"] is False


# ----------------------------------------------------------------------------- Bulyan


def _reference_bulyan_krum(points: np.ndarray, f: int) -> np.ndarray:
    """Plain loops over a numpy copy: recursive Krum (max(s-f-2, 1) neighbours) then
    beta-closest-to-median.
    """
    n = len(points)
    theta, beta = n - 2 * f, n - 4 * f
    remaining, selected = list(range(n)), []
    for _ in range(theta):
        k = max(len(remaining) - f - 2, 1)
        best, best_score = None, np.inf
        for i in remaining:
            d = sorted(float(np.sum((points[i] - points[j]) ** 2)) for j in remaining if j != i)
            score = sum(d[:k])
            if score < best_score:
                best, best_score = i, score
        selected.append(best)
        remaining.remove(best)
    chosen = points[selected]
    out = np.empty(points.shape[1])
    for k in range(points.shape[1]):
        column = chosen[:, k]
        median = np.median(column)
        out[k] = np.mean(column[np.argsort(np.abs(column - median), kind="stable")[:beta]])
    return out


def _reference_bulyan_trimmed_mean(points: np.ndarray, f: int) -> np.ndarray:
    n = len(points)
    theta, beta = n - 2 * f, n - 4 * f
    remaining, selected = list(range(n)), []
    for _ in range(theta):
        column_sorted = np.sort(points[remaining], axis=0)
        centre = column_sorted[f : len(remaining) - f].mean(axis=0)
        best = min(remaining, key=lambda i: float(np.sum((points[i] - centre) ** 2)))
        selected.append(best)
        remaining.remove(best)
    chosen = points[selected]
    median = np.median(chosen, axis=0)
    order = np.argsort(np.abs(chosen - median), axis=0, kind="stable")[:beta]
    return np.take_along_axis(chosen, order, axis=0).mean(axis=0)


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("bulyan_krum", _reference_bulyan_krum),
        ("bulyan_trimmed_mean", _reference_bulyan_trimmed_mean),
    ],
)
def test_bulyan_matches_independent_loops(name: str, reference) -> None:
    generator = torch.Generator().manual_seed(3)
    updates = torch.randn(11, 6, generator=generator, dtype=torch.float64)
    updates[:2] += 3.0  # two shifted rows
    result = make_aggregator(name, 2)(updates)
    np.testing.assert_allclose(
        result.numpy(), reference(updates.numpy(), 2), rtol=1e-12, atol=1e-12
    )


def test_bulyan_second_stage_is_not_a_plain_mean() -> None:
    # per coordinate: median 2, the beta = 3 closest values are 1, 2, 3 -> 2 (the mean of all five
    # is 3.2)
    selected = _column([0.0, 1.0, 2.0, 3.0, 10.0])
    assert float(bulyan_coordinate_stage(selected, beta=3)) == 2.0
    generator = torch.Generator().manual_seed(4)
    updates = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    bulyan = make_aggregator("bulyan_krum", 1)  # theta = 5, beta = 3
    result = bulyan(updates)
    assert len(bulyan.last_accepted) == 5
    assert not torch.allclose(result, updates[bulyan.last_accepted].mean(dim=0))


def test_bulyan_needs_4f_plus_3() -> None:
    with pytest.raises(ValueError, match="n >= 4f \\+ 3.*f may be at most 1"):
        make_aggregator("bulyan_krum", 2)(torch.randn(10, 3))
    with pytest.raises(ValueError, match="n >= 4f \\+ 3"):
        make_aggregator("bulyan_trimmed_mean", 1)(torch.randn(6, 3))


# ----------------------------------------------------------------------------- coordinate-wise
# rules


def test_median_by_hand_even_and_odd() -> None:
    updates = torch.tensor([[1.0, 5.0], [2.0, 4.0], [3.0, 100.0], [4.0, 0.0]])
    torch.testing.assert_close(make_aggregator("median")(updates), torch.tensor([2.5, 4.5]))
    torch.testing.assert_close(make_aggregator("median")(updates[:3]), torch.tensor([2.0, 5.0]))


def test_trimmed_mean_by_hand() -> None:
    column = _column([1.0, 2.0, 3.0, 4.0, 100.0])
    assert float(make_aggregator("trimmed_mean", beta=0.2)(column)) == 3.0  # drop 1 and 100
    assert float(make_aggregator("trimmed_mean")(column)) == 22.0  # floor(0.1 * 5) = 0: plain mean
    ten = _column([float(v) for v in [-50, 1, 2, 3, 4, 5, 6, 7, 8, 90]])
    assert float(make_aggregator("trimmed_mean")(ten)) == 4.5  # floor(0.1 * 10) = 1 per tail
    by_f = make_aggregator("trimmed_mean", 2, trim_by="num_attackers")
    assert float(by_f(ten)) == 4.5  # drop -50, 1 and 8, 90 -> mean(2..7)


def test_trimming_everything_raises() -> None:
    with pytest.raises(ValueError, match="leaves nothing"):
        make_aggregator("trimmed_mean", 5, trim_by="num_attackers")(torch.randn(10, 2))
    with pytest.raises(ValueError, match="beta must be a finite float in \\[0, 0.5\\)"):
        make_aggregator("trimmed_mean", beta=0.5)
    with pytest.raises(ValueError, match="trim_by must be one of"):
        make_aggregator("trimmed_mean", trim_by="f")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("name", "params", "num_attackers", "num_honest"),
    [
        ("median", {}, 4, 7),
        ("trimmed_mean", {"trim_by": "num_attackers"}, 4, 7),
        ("trimmed_mean", {}, 1, 9),  # beta = 0.1 trims 1 per tail of 10
        ("bulyan_krum", {}, 2, 9),
        ("bulyan_trimmed_mean", {}, 2, 9),
    ],
)
def test_coordinatewise_output_within_honest_range(
    name: str, params: dict, num_attackers: int, num_honest: int, dtype: torch.dtype
) -> None:
    for seed in range(3):
        updates = _honest_and_outliers(num_honest, num_attackers, 30, seed=seed, dtype=dtype)
        honest = updates[num_attackers:]
        result = make_aggregator(name, num_attackers, **params)(updates)
        assert bool((result >= honest.min(dim=0).values).all()) and bool(
            (result <= honest.max(dim=0).values).all()
        )


# ----------------------------------------------------------------------------- RFA


def test_rfa_one_weiszfeld_step_by_hand() -> None:
    points = _column([0.0, 1.0, 10.0])
    start = 11.0 / 3.0
    betas = [1.0 / abs(start - x) for x in (0.0, 1.0, 10.0)]
    expected = sum(b * x for b, x in zip(betas, (0.0, 1.0, 10.0), strict=True)) / sum(betas)
    result = make_aggregator("rfa", max_iterations=1)(points)
    assert float(result) == pytest.approx(expected, rel=1e-12)


def test_rfa_converges_to_geometric_median_and_uses_sample_counts() -> None:
    points = _column([0.0, 1.0, 10.0])  # 1-D geometric median = median = 1
    assert float(make_aggregator("rfa", max_iterations=500, ftol=0.0)(points)) == pytest.approx(
        1.0, abs=1e-3
    )
    # weights 1, 1, 3: weighted median is 10
    counts = AggregationContext(sample_counts=torch.tensor([1.0, 1.0, 3.0], dtype=torch.float64))
    assert float(
        make_aggregator("rfa", max_iterations=500, ftol=0.0)(points, counts)
    ) == pytest.approx(10.0, abs=1e-3)
    ignored = make_aggregator("rfa", max_iterations=500, ftol=0.0, use_sample_counts=False)
    assert float(ignored(points, counts)) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rfa_stays_near_honest_updates(dtype: torch.dtype) -> None:
    num_attackers, num_honest = 4, 7
    updates = _honest_and_outliers(num_honest, num_attackers, 20, seed=5, dtype=dtype)
    honest = updates[num_attackers:]
    honest_centre = honest.mean(dim=0)
    honest_radius = float((honest - honest_centre).norm(dim=1).max())
    mean_error = float((updates.mean(dim=0) - honest_centre).norm())
    default_error = float((make_aggregator("rfa")(updates) - honest_centre).norm())
    assert (
        default_error < 1e-3 * mean_error
    )  # 10 Weiszfeld steps from the mean shrink the pull ~(4/7)^10
    converged = make_aggregator("rfa", max_iterations=200, ftol=0.0)(updates)
    assert float((converged - honest_centre).norm()) < honest_radius


def test_rfa_parameter_errors() -> None:
    for params in ({"nu": 0.0}, {"max_iterations": 0}, {"ftol": -1.0}):
        with pytest.raises(ValueError, match="rfa:"):
            make_aggregator("rfa", **params)


def test_all_permutations_small_krum_bulyan() -> None:
    generator = torch.Generator().manual_seed(6)
    updates = torch.randn(7, 3, generator=generator, dtype=torch.float64)
    for name, f in (("krum", 1), ("bulyan_krum", 1), ("multikrum", 2)):
        expected = make_aggregator(name, f)(updates)
        for perm in itertools.islice(itertools.permutations(range(7)), 0, 5040, 97):
            torch.testing.assert_close(make_aggregator(name, f)(updates[list(perm)]), expected)
