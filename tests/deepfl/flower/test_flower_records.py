"""Model vectors and client states as Flower records: exact round trips, no pickle, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flower_fixtures import assert_same_state, require

require("flwr")
from flwr.app import Context, RecordDict
from flwr.common.serde import context_from_proto, context_to_proto

from deepfl.flat import FlatState
from deepfl.flower.records import (
    arrays_to_vector,
    load_state,
    save_state,
    vector_to_arrays,
)
from deepfl.models import build_model


def _layout_and_vector() -> tuple[FlatState, torch.Tensor]:
    torch.manual_seed(0)
    flat = FlatState(build_model("resnet18", (3, 32, 32), 10, 4))  # BatchNorm buffers included
    return flat, torch.randn(flat.layout.size)


def test_model_vector_round_trips_bit_for_bit_with_one_named_array_per_entry() -> None:
    flat, vector = _layout_and_vector()
    record = vector_to_arrays(vector, flat.layout)
    assert list(record) == list(flat.layout.names)
    assert any("running_var" in name for name in record)
    assert torch.equal(arrays_to_vector(record, flat.layout), vector)


def test_model_arrays_that_do_not_fit_the_model_are_rejected() -> None:
    flat, vector = _layout_and_vector()
    record = vector_to_arrays(vector, flat.layout)
    del record[flat.layout.names[0]]
    with pytest.raises(ValueError, match="missing"):
        arrays_to_vector(record, flat.layout)
    with pytest.raises(ValueError, match="NaN or inf"):
        arrays_to_vector(
            vector_to_arrays(torch.full_like(vector, float("nan")), flat.layout), flat.layout
        )
    with pytest.raises(ValueError, match="shape"):
        vector_to_arrays(vector[:-1], flat.layout)


def _client_state() -> dict:
    """Every kind of value FLIP and the adaptive attacker keep (deepfl/flip/defense.py)."""
    distance = np.random.default_rng(0).random((10, 10))
    distance[3, 4] = np.nan
    return {
        "flip_distance": distance,
        "flip_last_pairs": np.array([[1, 7, 0]], dtype=np.int64),
        "flip_times_selected": 2,
        "flip_warmup_round": 11,
        "flip_suspect_target": np.int64(7),
        "flip_last_stats": {"mean_mask_l1": 1 / 3, "success_rate": float("nan"), "num_pairs": 1.0},
        "flip_suspect_mask": torch.rand(28, 28, dtype=torch.float64),
        "notes": [None, True, "x", [1, 2.5]],
    }


def test_client_state_survives_flowers_context_serialisation_exactly() -> None:
    state = _client_state()
    context = Context(
        run_id=1, node_id=2, node_config={"partition-id": 0}, state=RecordDict(), run_config={}
    )
    save_state(context.state, "deepfl.client", state)
    restored = context_from_proto(
        context_to_proto(context)
    )  # what a SuperNode stores between rounds
    assert_same_state(load_state(restored.state, "deepfl.client"), state)
    assert load_state(restored.state, "deepfl.attacker") == {}


@pytest.mark.parametrize(
    "value, problem",
    [
        ((1, 2), "tuple"),
        ({1: 0.5}, "non-string key"),
        (np.array([object()]), "object array"),
        ({1, 2}, "set"),
    ],
)
def test_values_that_would_not_come_back_unchanged_are_refused(value: object, problem: str) -> None:
    with pytest.raises(TypeError, match=problem):
        save_state(RecordDict(), "deepfl.client", {"bad": value})
