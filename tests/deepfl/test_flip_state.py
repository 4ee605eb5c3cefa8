"""FlipClientState: the typed FLIP client memory, its flip_* keys and its checkpoint round trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from flip_fixtures import BackdooredSetup, backdoored_setup  # noqa: F401
from test_flip_defense import FAST, TRAINER, context

from deepfl import checkpoint
from deepfl.client import LocalData
from deepfl.flip import FlipDefense
from deepfl.flip.state import FlipClientState


def test_to_dict_stores_only_set_fields_under_flip_keys() -> None:
    state = FlipClientState(times_selected=2, distance=np.eye(3), last_stats={"num_pairs": 1.0})
    assert state.to_dict().keys() == {"flip_times_selected", "flip_distance", "flip_last_stats"}
    assert FlipClientState().to_dict() == {}
    assert set(FlipClientState.keys()) == {
        "flip_" + f.name for f in dataclasses.fields(FlipClientState)
    }


def test_from_dict_ignores_other_keys_and_refuses_unknown_flip_keys() -> None:
    read = FlipClientState.from_dict({"flip_warmup_round": np.int64(4), "momentum": np.zeros(2)})
    assert read.warmup_round == 4 and isinstance(read.warmup_round, int)
    with pytest.raises(KeyError, match=r"unknown FLIP state key\(s\) \['flip_warmup_rnd'\]"):
        FlipClientState.from_dict({"flip_warmup_rnd": 4})


def test_save_to_keeps_the_engines_other_keys() -> None:
    engine_state: dict = {"other": 1}
    FlipClientState(refresh_round=3).save_to(engine_state)
    assert engine_state == {"other": 1, "flip_refresh_round": 3}


@pytest.mark.slow
def test_a_real_client_state_round_trips_through_a_checkpoint(
    backdoored_setup: BackdooredSetup, tmp_path
) -> None:
    s = backdoored_setup
    data = LocalData(s.images[:300], s.labels[:300])
    state: dict = {}
    FlipDefense(**FAST, pairs_per_round=2).train(s.clone_model(), data, state, TRAINER, context(1))
    typed = FlipClientState.from_dict(state)
    assert typed.to_dict().keys() == state.keys()
    assert typed.times_selected == 1 and typed.warmup_round == 1
    assert typed.distance is not None and typed.distance.shape == (10, 10)
    checkpoint.save_atomic(tmp_path / "c.pt", {"clients": {3: state}})
    loaded = checkpoint.load(tmp_path / "c.pt", torch.device("cpu"))["clients"][3]
    again = FlipClientState.from_dict(loaded)
    for field in dataclasses.fields(FlipClientState):
        before, after = getattr(typed, field.name), getattr(again, field.name)
        if isinstance(before, np.ndarray):
            np.testing.assert_array_equal(before, after)
        else:
            assert before == after, field.name
