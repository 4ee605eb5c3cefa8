"""One-round probe: simulated W_def - W_nodef equals the closed form of THEORY.md section 2 for E =
1.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from linear_fl_fixtures import small_config

from fldata.triggers import Trigger
from linear_fl.probe import one_round_probe
from linear_fl.twin import prepare


@pytest.fixture(scope="module")
def setups(small_cache):
    return {
        w: prepare(small_config(small_cache, weights=w, benign_fraction=0.4))
        for w in ("equal", "samples")
    }


def _inverted_like(setup) -> Trigger:
    rng = np.random.default_rng(5)
    C, H, W = setup.image_shape
    return Trigger(
        mask=rng.uniform(size=(H, W)) * (rng.uniform(size=(H, W)) > 0.9),
        pattern=rng.uniform(size=(C, H, W)),
    )


@pytest.mark.parametrize("weights", ["equal", "samples"])
@pytest.mark.parametrize("convention", ["paper", "union-mean"])
@pytest.mark.parametrize("malicious", ["simulated", "random", "scaled x100", "zero"])
@pytest.mark.slow
def test_closed_form_equals_simulation(setups, weights, convention, malicious):
    s = setups[weights]
    s = dataclasses.replace(s, config=s.config.replace(convention=convention))
    rng = np.random.default_rng(3)
    W_t = s.W0 + 0.01 * rng.normal(size=s.W0.shape)
    W_M = {
        "simulated": None,
        "random": W_t + rng.normal(size=W_t.shape),
        "scaled x100": W_t + 100 * rng.normal(size=W_t.shape),
        "zero": np.zeros_like(W_t),
    }[malicious]
    p = one_round_probe(s, W_t, 2, recovered_trigger=_inverted_like(s), malicious_model=W_M)
    assert p.closed_form_applies
    expected_pB = 0.5 if weights == "equal" else s.benign.n / (s.benign.n + s.malicious.n)
    assert p.p_B == pytest.approx(expected_pB) and p.lambda_c == (
        1.0 if convention == "paper" else 0.5
    )
    assert np.linalg.norm(p.deltaW_closed) > 1e-6
    assert p.relative_error < 1e-10
    assert np.max(np.abs(p.deltaW_simulated.sum(axis=0))) < 1e-12 * max(
        1.0, np.abs(p.deltaW_simulated).max()
    )
    assert np.allclose(p.delta, p.X_benign_hat - p.X_benign_true) and np.all(p.delta[:, -1] == 0)


@pytest.mark.slow
def test_probe_with_inversion_and_multi_epoch_flag(setups):
    s = setups["equal"]
    p = one_round_probe(s, s.W0, 1)
    assert p.inversion is not None and p.recovered_trigger.mask.shape == s.image_shape[1:]
    assert p.relative_error < 1e-10
    s3 = dataclasses.replace(s, config=s.config.replace(local_epochs=3))
    p3 = one_round_probe(s3, s.W0, 1, recovered_trigger=p.recovered_trigger)
    assert not p3.closed_form_applies
    assert p3.relative_error > 1e-6  # the one-step formula is not the three-step simulation


def test_probe_rejects_wrong_shapes(setups):
    s = setups["equal"]
    with pytest.raises(ValueError, match="W_start must have shape"):
        one_round_probe(s, s.W0[:, :-1], 1)
