"""THEORY.md section 8, check 19: Corollary 1 counts, probability brackets, certificates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax
from theory_instances import backdoor_scenario, pair_instances

from fldata.metrics import threshold_counts
from theory.corollary1 import (
    certified_neutralised,
    corollary_counts,
    probability_bracket,
    robust_certified_counts,
    robust_target_upper,
)
from theory.frozen import frozen_model


@settings(max_examples=100, deadline=None)
@given(pair_instances(), st.sampled_from(["theorem1", "jensen"]))
def test_brackets_contain_true_probabilities(inst, kind):
    z, u = inst.X @ inst.W.T, inst.X @ inst.delta_W.T
    bracket = probability_bracket(z, u, kind)
    q = softmax(z + u, axis=1)
    assert np.all(bracket.lower <= q * (1 + 1e-9) + 1e-300)
    assert np.all(q <= bracket.upper * (1 + 1e-9) + 1e-300)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 12), st.sampled_from([0.0, 0.4, 0.6, 0.8, 0.95]))
def test_certified_sets_are_subsets_and_counts_match_metrics(seed, c, tau):
    rng = np.random.default_rng(seed)
    sc = backdoor_scenario(rng, c=c, n_test=60)
    W_prime = sc.W + 3.0 * rng.standard_normal(sc.W.shape) * rng.uniform(0, 1)
    counts = corollary_counts(sc.W, W_prime, sc.X_test, sc.y_test, sc.X_backdoor, sc.target, tau)
    assert counts.sound
    q_c = softmax(sc.X_test @ W_prime.T, axis=1)
    q_b = softmax(sc.X_backdoor @ W_prime.T, axis=1)
    assert counts.defense["n_acc"] == threshold_counts(q_c, sc.y_test, tau).accepted_correct
    targets = np.full(len(q_b), sc.target)
    actual_neutralised = len(q_b) - threshold_counts(q_b, targets, tau).accepted_correct
    for cert in counts.certified.values():
        assert cert["neutralised"] <= actual_neutralised
        assert cert["newly_neutralised"] <= counts.newly_neutralised_actual
        assert cert["kept"] <= counts.defense["n_acc"]
        assert cert["rejected"] <= counts.defense["rejected_backdoor"]
    assert counts.neutralised_actual == counts.no_defense["n_asr"] - counts.defense["n_asr"]
    rej = counts.paper_rejections
    assert (
        rej["backdoor"]
        == counts.defense["rejected_backdoor"] - counts.no_defense["rejected_backdoor"]
    )


def test_theorem1_bracket_certifies_no_newly_neutralised_when_target_is_argmin():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((200, 5)) * 3
    u = rng.standard_normal((200, 5))
    target = 0
    u[:, target] = u.min(axis=1) - rng.uniform(0.1, 2.0, 200)  # T = argmin u
    p = softmax(z, axis=1)
    bracket = probability_bracket(z, u, "theorem1")
    assert np.allclose(bracket.upper[:, target], p[:, target], rtol=1e-12)  # U_T = p_T exactly
    for tau in (0.0, 0.4, 0.6, 0.8):
        success_before = (p.argmax(axis=1) == target) & (p.max(axis=1) >= tau)
        assert not np.any(certified_neutralised(bracket, target, tau) & success_before)
    jensen = probability_bracket(z, u, "jensen")
    newly = sum(
        int(
            np.sum(
                certified_neutralised(jensen, target, tau)
                & (p.argmax(axis=1) == target)
                & (p.max(axis=1) >= tau)
            )
        )
        for tau in (0.0, 0.4, 0.6, 0.8)
    )
    assert newly > 0


@pytest.mark.parametrize("route", ["jensen", "theorem1"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_robust_counts_non_increasing_and_sound(route, per_sample):
    rng = np.random.default_rng(4)
    sc = backdoor_scenario(rng, c=5, n_test=80, eta=20.0)
    model = frozen_model(sc.rnd)
    eps_values = np.array([0.0, 0.01, 0.05, 0.1, 0.3, 1.0])
    for tau in (0.4, 0.8, 0.95):
        counts = robust_certified_counts(
            model, sc.W, sc.X_backdoor, sc.target, eps_values, tau, route, per_sample, sc.support
        )
        assert np.all(np.diff(counts) <= 0)
    bound = robust_target_upper(
        model, sc.W, sc.X_backdoor, sc.target, 0.1, route, per_sample, sc.support
    )
    n_B = sc.rnd.n_B if per_sample else None
    for _ in range(5):  # valid upper bound on p'_T for deltas in the ball
        shape = (sc.support.size,) if n_B is None else (n_B, sc.support.size)
        delta = rng.uniform(-0.1, 0.1, shape) * sc.support
        q = softmax(sc.X_backdoor @ (sc.W + model.deltaW(delta)).T, axis=1)[:, sc.target]
        assert np.all(q <= bound * (1 + 1e-9))


def test_bad_bracket_kind():
    with pytest.raises(ValueError, match="theorem1"):
        probability_bracket(np.zeros((1, 2)), np.zeros((1, 2)), "hoeffding")
