"""THEORY.md section 8, checks 9-12: closed-form DeltaW, stamp errors, frozen-residual models."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from theory_instances import hardening_round

from fldata.triggers import dba_trigger, stamp
from theory.frozen import (
    CONVENTIONS,
    deltaW_closed_form,
    deltaW_exact,
    frozen_model,
    mean_gradient,
    relative_error,
    shared_delta,
    taylor_deltaW,
)


def simulate_round(rnd, W_malicious, p_M):
    """Two FedAvg rounds from W_t written out step by step (THEORY.md section 2), sharing W_M."""
    W_t = rnd.W_start
    G_c = mean_gradient(W_t, rnd.X_clean, rnd.y)
    G_a = mean_gradient(W_t, rnd.X_hat, rnd.y)
    benign_nd = W_t - rnd.eta * G_c
    benign_d = W_t - rnd.eta * (rnd.lambda_c * G_c + rnd.lambda_a * G_a)

    def agg(W_B: np.ndarray) -> np.ndarray:
        return W_t + rnd.p_B * (W_B - W_t) + p_M * (W_malicious - W_t)

    return agg(benign_nd), agg(benign_d)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(sorted(CONVENTIONS)),
    st.floats(-2, 1),
    st.floats(0.05, 0.95),
)
def test_closed_form_matches_simulated_round(seed, convention, log_scale, p_B):  # check 9
    rng = np.random.default_rng(seed)
    rnd = hardening_round(
        rng,
        c=int(rng.integers(2, 13)),
        w_scale=10.0**log_scale,
        p_B=p_B,
        convention=CONVENTIONS[convention],
        shared=bool(rng.integers(2)),
    )
    W_M = 10.0 * rng.standard_normal(rnd.W_start.shape)  # any oblivious malicious model
    W_nd, W_d = simulate_round(rnd, W_M, 1.0 - p_B)
    closed = deltaW_closed_form(rnd)
    assert relative_error(closed, W_d - W_nd) < 1e-10
    assert np.allclose(closed.sum(axis=0), 0.0, atol=1e-12 * (1 + np.abs(closed).max()))


def test_closed_form_rejects_bad_hyperparameters():
    rnd = hardening_round(np.random.default_rng(0))
    with pytest.raises(ValueError, match="eta > 0"):
        type(rnd)(**{**rnd.__dict__, "eta": -1.0})


def test_correct_mask_stamp_error_is_shared():  # check 10
    rng = np.random.default_rng(1)
    trigger = dba_trigger((1, 28, 28))
    images = rng.uniform(0, 1, (7, 1, 28, 28))
    recovered_pattern = rng.uniform(0, 1, trigger.pattern.shape)
    true_stamped = stamp(images, trigger.mask, trigger.pattern)
    delta = (stamp(images, trigger.mask, recovered_pattern) - true_stamped).reshape(7, -1)
    common = shared_delta(delta)
    assert common is not None
    assert np.allclose(
        common, (trigger.mask * (recovered_pattern - trigger.pattern)).ravel(), atol=1e-15
    )
    wrong_mask = np.roll(trigger.mask, 5, axis=1)
    delta_wrong = (stamp(images, wrong_mask, recovered_pattern) - true_stamped).reshape(7, -1)
    assert shared_delta(delta_wrong) is None


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans(), st.sampled_from(sorted(CONVENTIONS)))
def test_f_hat_reproduces_realised_deltaW_and_affine_law(seed, shared, convention):  # check 11
    rng = np.random.default_rng(seed)
    rnd = hardening_round(
        rng, c=int(rng.integers(2, 13)), shared=shared, convention=CONVENTIONS[convention]
    )
    model = frozen_model(rnd, "F-hat")
    assert relative_error(model.deltaW(rnd.delta), deltaW_closed_form(rnd)) < 1e-12
    assert abs(model.rho.sum()) < 1e-12 * (1 + np.abs(model.rho).max())
    delta = rng.uniform(-0.1, 0.1, rnd.W_start.shape[1])
    X = rng.uniform(0, 1, (9, rnd.W_start.shape[1]))
    affine = model.logit_change(X) - model.eta_a * np.outer(X @ delta, model.rho)
    assert np.allclose(X @ model.deltaW(delta).T, affine, rtol=1e-12, atol=1e-14)


def test_error_orders_of_f0_and_taylor():  # check 12: ~10x per decade (F0), ~100x (Taylor)
    rng = np.random.default_rng(7)
    rnd = hardening_round(rng, c=5, d=8, n_B=30, w_scale=2.0, eps=0.0)
    model_f0 = frozen_model(rnd, "F0")
    direction = rng.uniform(-1, 1, rnd.W_start.shape[1])
    direction[-1] = 0.0
    errors_f0, errors_taylor = [], []
    for eps in (1e-2, 1e-3, 1e-4):
        exact = deltaW_exact(rnd, eps * direction)
        errors_f0.append(np.linalg.norm(model_f0.deltaW(eps * direction) - exact))
        errors_taylor.append(np.linalg.norm(taylor_deltaW(rnd, eps * direction) - exact))
    ratios_f0 = np.array(errors_f0[:-1]) / np.array(errors_f0[1:])
    ratios_taylor = np.array(errors_taylor[:-1]) / np.array(errors_taylor[1:])
    assert np.all((ratios_f0 > 8) & (ratios_f0 < 12)), ratios_f0
    assert np.all((ratios_taylor > 80) & (ratios_taylor < 120)), ratios_taylor


def test_unknown_frozen_model_rejected():
    with pytest.raises(ValueError, match="F-hat"):
        frozen_model(hardening_round(np.random.default_rng(0)), "taylor2")
