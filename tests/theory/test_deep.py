"""theory.deep (torch-free): several benign clients' closed form and stacked frozen model against an
independent simulation, the last-layer bracket of a full round, save / load, and the analysis."""

from __future__ import annotations

import json

import numpy as np
import pytest
from deep_instances import synthetic_state

from theory.deep.analysis import analyse, trigger_error
from theory.deep.carry import containment, last_layer_bracket
from theory.deep.rounds import client_rounds, closed_form_deltaW, pair_order, stacked_frozen_model
from theory.deep.state import DeepProbeState, load_probe_state, save_probe_state
from theory.frozen import frozen_model, relative_error
from theory.report import failed_must_hold, json_ready


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_sums_the_benign_clients(seed):
    state = synthetic_state(seed)
    rounds = client_rounds(state)
    assert len(rounds) == 2  # the client without hardening samples adds nothing
    simulated = state.protocol_W_def - state.protocol_W_nodef
    assert relative_error(closed_form_deltaW(rounds, simulated.shape), simulated) < 1e-12
    assert np.allclose(np.ones(simulated.shape[0]) @ simulated, 0.0, atol=1e-15)  # 1^T DeltaW = 0


def test_stacked_frozen_model_is_the_sum_of_the_clients_models():
    state = synthetic_state(3)
    rounds = client_rounds(state)
    stacked = stacked_frozen_model(rounds)
    order = pair_order(state)
    delta = np.random.default_rng(0).normal(size=(len(order), state.W_start.shape[1]))
    parts = np.split(delta, np.cumsum([rnd.n_B for rnd in rounds])[:-1])
    summed = sum(frozen_model(rnd).deltaW(part) for rnd, part in zip(rounds, parts, strict=True))
    assert relative_error(stacked.deltaW(delta), summed) < 1e-12
    realised = state.pool_X_hat[order] - state.pool_X_true[order]
    assert (
        relative_error(stacked.deltaW(realised), state.protocol_W_def - state.protocol_W_nodef)
        < 1e-12
    )
    assert abs(stacked.rho.sum()) < 1e-12


def test_no_hardening_client_is_a_clear_error():
    state = synthetic_state(0, pool_per_client=(0, 0, 0))
    assert client_rounds(state) == []
    with pytest.raises(ValueError, match="no benign client has hardening samples"):
        stacked_frozen_model([])
    payload, checks, _ = analyse(state, [0.0])
    assert payload["last_layer_protocol"]["theorem2"] is None and not failed_must_hold(checks)


def test_bracket_is_exact_when_the_features_do_not_move_and_not_otherwise():
    still = analyse(synthetic_state(4), [0.0, 0.5])[0]["all_layers"]
    assert still["violations_clean"] == 0 and still["violations_backdoor"] == 0
    assert still["clean"]["inside_fraction"] == 1.0
    moved = analyse(synthetic_state(4, features_move=True), [0.0])[0]["all_layers"]
    assert moved["violations_clean"] + moved["violations_backdoor"] > 0
    assert moved["clean"]["outside"] == moved["clean"]["below"] + moved["clean"]["above"]


def test_last_layer_bracket_uses_the_full_models_loss_change():
    state = synthetic_state(5, features_move=True)
    bounds = last_layer_bracket(
        state.full_logits_nodef_clean,
        state.full_logits_def_clean,
        state.full_X_clean,
        state.full_W_nodef,
        state.full_W_def,
        state.y_clean,
    )

    def ce(z, y):
        z = z - z.max(axis=1, keepdims=True)
        return np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]

    expected = ce(state.full_logits_def_clean, state.y_clean) - ce(
        state.full_logits_nodef_clean, state.y_clean
    )
    assert np.allclose(bounds.actual, expected, atol=1e-12)


def test_containment_counts_and_distances():
    lb, ub = np.array([-1.0, -1.0, -1.0, 0.0]), np.array([1.0, 1.0, 1.0, 0.0])
    actual = np.array([0.5, -3.0, 2.0, 0.0])
    out = containment(lb, ub, actual, np.ones(4))
    assert (out["outside"], out["below"], out["above"]) == (2, 1, 1)
    assert (
        out["inside_fraction"] == 0.5
        and out["distance_max"] == 2.0
        and out["distance_median"] == 1.5
    )
    assert out["relative_distance_median"] == pytest.approx(0.75)


def test_analysis_must_hold_checks_and_counters():
    payload, checks, samples = analyse(synthetic_state(6), [0.0, 0.4])
    assert not failed_must_hold(checks)
    for part in ("last_layer_sgd", "last_layer_protocol", "all_layers"):
        assert payload[part]["violations_clean"] == 0 and payload[part]["violations_backdoor"] == 0
    assert payload["last_layer_protocol"]["deltaW_rel_error"] < 1e-10
    assert payload["last_layer_protocol"]["theorem2"]["error_model"] == "per-sample"
    assert payload["last_layer_protocol"]["theorem2"]["eps_paper_status"] in (
        "vacuous",
        "undefined",
    )
    assert samples["protocol_clean_lb"].shape == (40,)
    json.dumps(json_ready(payload))


def test_trigger_error_is_the_feature_space_infinity_norm_without_the_bias():
    state = synthetic_state(7)
    error = trigger_error(state)
    delta = state.pool_X_hat - state.pool_X_true
    assert error["n_pairs"] == len(delta) and error["feature_dim"] == state.W_start.shape[1] - 1
    assert error["feature_inf_max"] == np.abs(delta[:, :-1]).max()


def test_state_round_trip_and_validation(tmp_path):
    state = synthetic_state(8)
    save_probe_state(tmp_path, state)
    again = load_probe_state(tmp_path)
    assert json.dumps(json_ready(analyse(again, [0.0])[0])) == json.dumps(
        json_ready(analyse(state, [0.0])[0])
    )
    arrays = state.to_arrays()
    arrays["X_clean"] = arrays["X_clean"][:, :-1]
    with pytest.raises(ValueError, match="feature columns"):
        DeepProbeState.from_arrays(arrays, state.meta)
    bad = state.to_arrays()
    bad["X_clean"] = bad["X_clean"].copy()
    bad["X_clean"][:, -1] = 2.0
    with pytest.raises(ValueError, match="bias feature"):
        DeepProbeState.from_arrays(bad, state.meta)
    del bad["eta"]
    with pytest.raises(ValueError, match="needs arrays"):
        DeepProbeState.from_arrays(bad, state.meta)
