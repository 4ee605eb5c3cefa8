"""Registry, parameter/input validation, NaN handling, dtypes and permutation invariance of every
defense.
"""

from __future__ import annotations

import logging

import pytest
import torch

from deepfl.defenses import REGISTRY, AggregationContext, make_aggregator

NAMES = sorted(REGISTRY)
EXPECTED_NAMES = {
    "fedavg",
    "krum",
    "multikrum",
    "bulyan_krum",
    "bulyan_trimmed_mean",
    "median",
    "trimmed_mean",
    "rfa",
    "foolsgold",
    "fltrust",
    "dnc",
    "flame",
}
NUM_ROWS, DIM = 11, 40
# f per defense chosen so every precondition holds for NUM_ROWS rows (Bulyan needs n >= 4f + 3).
ATTACKERS = {name: (2 if name.startswith("bulyan") else 3) for name in EXPECTED_NAMES}


def _context(
    num_rows: int, dim: int, dtype: torch.dtype, generator: torch.Generator
) -> AggregationContext:
    return AggregationContext(
        client_ids=list(range(100, 100 + num_rows)),
        sample_counts=torch.randint(20, 200, (num_rows,), generator=generator).to(dtype),
        global_params=torch.randn(dim, generator=generator, dtype=dtype),
        server_update=torch.randn(dim, generator=generator, dtype=dtype),
        output_layer=slice(dim - 10, dim),
    )


def _updates(
    num_rows: int, dim: int, dtype: torch.dtype, generator: torch.Generator
) -> torch.Tensor:
    return torch.randn(num_rows, dim, generator=generator, dtype=dtype)


def test_registry_has_exactly_the_contract_names() -> None:
    assert set(REGISTRY) == EXPECTED_NAMES
    assert {name for name, cls in REGISTRY.items() if cls.needs_server_update} == {"fltrust"}


@pytest.mark.parametrize("name", NAMES)
def test_every_defense_docstring_has_an_example_that_calls_it(name: str) -> None:
    """The examples run as doctests (pyproject: --doctest-modules on deepfl/defenses)."""
    doc = REGISTRY[name].__doc__ or ""
    assert "Example:" in doc and ">>> " in doc and f'REGISTRY["{name}"]' in doc


@pytest.mark.parametrize("name", NAMES)
def test_unknown_parameter_lists_allowed_ones(name: str) -> None:
    with pytest.raises(
        TypeError, match=r"unknown key 'not_a_parameter'; allowed keys: num_attackers"
    ):
        REGISTRY[name](num_attackers=1, not_a_parameter=3)


def test_make_aggregator_rejects_unknown_name_and_negative_f() -> None:
    with pytest.raises(
        ValueError, match=r"unknown server defense 'kurm' \(did you mean 'krum'\?\); known: "
    ):
        make_aggregator("kurm")
    with pytest.raises(ValueError, match=r"num_attackers must be an int in \[0, inf\); got -1"):
        make_aggregator("krum", num_attackers=-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_output_shape_dtype_and_finiteness(name: str, dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(0)
    updates = _updates(NUM_ROWS, DIM, dtype, generator)
    aggregator = make_aggregator(name, ATTACKERS[name])
    result = aggregator(updates, _context(NUM_ROWS, DIM, dtype, generator))
    assert result.shape == (DIM,) and result.dtype == dtype and result.device == updates.device
    assert bool(torch.isfinite(result).all())
    assert aggregator.last_info["excluded_nonfinite"] == []
    if aggregator.last_accepted is not None:
        assert set(aggregator.last_accepted) <= set(range(NUM_ROWS))


@pytest.mark.parametrize("name", NAMES)
def test_permutation_invariance(name: str) -> None:
    generator = torch.Generator().manual_seed(1)
    updates = _updates(NUM_ROWS, DIM, torch.float64, generator)
    context = _context(NUM_ROWS, DIM, torch.float64, generator)
    second_round = _updates(NUM_ROWS, DIM, torch.float64, generator)
    original = make_aggregator(name, ATTACKERS[name])
    original(updates, context)  # first round (fills FoolsGold's history)
    expected = original(second_round, context)
    for _ in range(3):
        perm = torch.randperm(NUM_ROWS, generator=generator)
        permuted_context = AggregationContext(
            client_ids=[context.client_ids[i] for i in perm.tolist()],
            sample_counts=context.sample_counts[perm],
            global_params=context.global_params,
            server_update=context.server_update,
            output_layer=context.output_layer,
        )
        permuted = make_aggregator(name, ATTACKERS[name])
        permuted(updates[perm], permuted_context)
        result = permuted(second_round[perm], permuted_context)
        torch.testing.assert_close(result, expected, rtol=1e-9, atol=1e-10)
        if original.last_accepted is not None:
            assert sorted(perm[permuted.last_accepted].tolist()) == sorted(original.last_accepted)


@pytest.mark.parametrize("name", NAMES)
def test_nonfinite_rows_are_excluded_and_logged(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    generator = torch.Generator().manual_seed(2)
    updates = _updates(NUM_ROWS, DIM, torch.float64, generator)
    context = _context(NUM_ROWS, DIM, torch.float64, generator)
    bad = updates.clone()
    bad[3, 5] = float("nan")
    bad[7, 0] = float("inf")
    with caplog.at_level(logging.WARNING, logger="deepfl.defenses"):
        aggregator = make_aggregator(name, ATTACKERS[name])
        result = aggregator(bad, context)
    assert "rows [3, 7]" in caplog.text
    assert aggregator.last_info["excluded_nonfinite"] == [3, 7]
    assert bool(torch.isfinite(result).all())
    keep = [i for i in range(NUM_ROWS) if i not in (3, 7)]
    # Excluded rows count as detected attackers: the rest is aggregated with f - 2.
    reference = make_aggregator(name, max(ATTACKERS[name] - 2, 0))
    expected = reference(updates[keep], context.subset(keep))
    torch.testing.assert_close(result, expected)
    if aggregator.last_accepted is not None:
        assert aggregator.last_accepted == [keep[i] for i in reference.last_accepted]


def test_all_rows_nonfinite_raise() -> None:
    updates = torch.full((4, 3), float("nan"))
    with pytest.raises(ValueError, match="all 4 updates contain NaN or inf"):
        make_aggregator("median")(updates)


@pytest.mark.parametrize(
    ("updates", "context", "message"),
    [
        (torch.zeros(5), None, "shape \\(n, d\\)"),
        (torch.zeros(5, 3, dtype=torch.int64), None, "floating-point"),
        (torch.zeros(0, 3), None, "at least one update row"),
        (torch.zeros(4, 3), AggregationContext(client_ids=[1, 2]), "client_ids has 2 entries"),
        (torch.zeros(2, 3), AggregationContext(client_ids=[1, 1]), "distinct"),
        (torch.zeros(4, 3), AggregationContext(sample_counts=torch.ones(3)), "expected \\(4,\\)"),
        (torch.zeros(4, 3), AggregationContext(server_update=torch.ones(2)), "expected \\(3,\\)"),
        (
            torch.zeros(4, 3),
            AggregationContext(global_params=torch.tensor([0.0, float("nan"), 1.0])),
            "NaN",
        ),
    ],
)
def test_bad_input_raises_value_error(
    updates: torch.Tensor, context: AggregationContext | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_aggregator("fedavg")(updates, context)


def test_paper_defaults() -> None:
    rfa = make_aggregator("rfa")
    assert (rfa.nu, rfa.ftol, rfa.max_iterations) == (1e-5, 1e-6, 10)
    dnc = make_aggregator("dnc")
    assert (dnc.niters, dnc.subsample_dim, dnc.filter_frac) == (5, 10000, 1.0)
    assert make_aggregator("trimmed_mean").beta == 0.1
    flame = make_aggregator("flame")
    assert (flame.noise_lambda, flame.min_cluster_size, flame.cluster_on) == (0.001, None, "models")
    assert make_aggregator("foolsgold").features == "output_layer"


def test_stateless_rules_reject_state() -> None:
    median = make_aggregator("median")
    assert median.state_dict() == {}
    with pytest.raises(ValueError, match="stateless"):
        median.load_state_dict({"history": {}})


def test_fedavg_weighted_by_sample_counts() -> None:
    updates = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    counts = torch.tensor([3.0, 1.0])
    result = make_aggregator("fedavg", weighted=True)(
        updates, AggregationContext(sample_counts=counts)
    )
    torch.testing.assert_close(result, torch.tensor([0.75, 1.0]))
    torch.testing.assert_close(make_aggregator("fedavg")(updates), torch.tensor([0.5, 2.0]))
    with pytest.raises(ValueError, match="needs context.sample_counts"):
        make_aggregator("fedavg", weighted=True)(updates)
