"""THEORY.md section 8, checks 13-18: paper-literal eps_P and the corrected certificates
T2-A/B/C.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from theory_instances import backdoor_scenario

from theory.frozen import frozen_model
from theory.theorem1 import bounds_from_logits, upper_bound
from theory.theorem2 import (
    backdoor_lower_bound,
    clean_bound,
    frozen_argmin_objective,
    jensen_certificate,
    paper_radius,
    sign_certificate,
)

SEEDS = st.integers(0, 2**32 - 1)
SETTINGS = settings(max_examples=25, deadline=None)


def random_deltas(rng, eps, support, count, n_B=None):
    shape = (count, support.size) if n_B is None else (count, n_B, support.size)
    return rng.uniform(-eps, eps, shape) * support


def backdoor_loss_change(sc, model, delta):
    z = sc.X_backdoor @ sc.W.T
    return bounds_from_logits(
        z, model.logit_change(sc.X_backdoor, delta), np.full(len(z), sc.target)
    ).actual


@SETTINGS
@given(SEEDS, st.floats(0.0, 12.0), st.integers(2, 12))
def test_paper_radius_is_degenerate(seed, strength, c):  # check 13
    rng = np.random.default_rng(seed)
    sc = backdoor_scenario(rng, c=c, backdoor_strength=strength, eps=0.1)
    model = frozen_model(sc.rnd)
    paper = paper_radius(model, sc.X_backdoor, sc.target, sc.support)
    assert paper.f0 <= 0.0
    assert paper.status in ("vacuous", "undefined")
    if paper.status == "undefined":
        assert paper.eps is None and paper.f0 == 0.0
    else:
        assert paper.eps is None or paper.eps <= 0.0
    for delta in random_deltas(rng, 0.5, sc.support, 5):
        true_lb = backdoor_lower_bound(model, sc.X_backdoor, sc.target, delta).mean()
        assert frozen_argmin_objective(model, sc.X_backdoor, sc.target, delta) >= true_lb - 1e-12


def test_paper_radius_vacuous_when_target_not_argmin():
    for seed in range(20):
        sc = backdoor_scenario(np.random.default_rng(seed), backdoor_strength=0.0)
        paper = paper_radius(frozen_model(sc.rnd), sc.X_backdoor, sc.target, sc.support)
        if paper.f0 < 0:
            assert paper.status == "vacuous" and paper.eps < 0
            return
    pytest.fail("no instance with f(0) < 0 found")


@SETTINGS
@given(SEEDS, st.integers(2, 12), st.booleans())
def test_sign_certificate_is_exact(seed, c, per_sample):  # checks 14 and 18
    rng = np.random.default_rng(seed)
    sc = backdoor_scenario(rng, c=c)
    model = frozen_model(sc.rnd)
    cert = sign_certificate(model, sc.X_backdoor, sc.target, sc.support, per_sample=per_sample)
    if not cert.premise:
        assert cert.eps is None and cert.min_margin < 0
        return
    eps = cert.eps
    n_B = sc.rnd.n_B if per_sample else None
    candidates = list(random_deltas(rng, eps, sc.support, 10, n_B))
    candidates.append(cert.worst_delta(model, sc.X_backdoor, sc.target, eps, sc.support))
    for delta in candidates:
        lb = backdoor_lower_bound(model, sc.X_backdoor, sc.target, delta)
        assert np.all(np.abs(lb) <= 1e-9)
        assert np.all(backdoor_loss_change(sc, model, delta) >= -1e-12)
    beyond = cert.worst_delta(model, sc.X_backdoor, sc.target, 1.001 * eps, sc.support)
    assert backdoor_lower_bound(model, sc.X_backdoor, sc.target, beyond)[cert.worst_sample] < 0
    if per_sample:
        shared = sign_certificate(model, sc.X_backdoor, sc.target, sc.support, per_sample=False)
        assert cert.eps <= shared.eps * (1 + 1e-12)


@SETTINGS
@given(SEEDS, st.integers(2, 12), st.booleans())
def test_jensen_certificate(seed, c, per_sample):  # checks 15 and 18
    rng = np.random.default_rng(seed)
    sc = backdoor_scenario(rng, c=c)
    model = frozen_model(sc.rnd)
    cert = jensen_certificate(
        model, sc.W, sc.X_backdoor, sc.target, sc.support, per_sample=per_sample
    )
    n_B = sc.rnd.n_B if per_sample else None
    z = sc.X_backdoor @ sc.W.T
    targets = np.full(len(z), sc.target)
    for delta in random_deltas(rng, 0.3, sc.support, 5, n_B):  # affine identity
        direct = bounds_from_logits(
            z, model.logit_change(sc.X_backdoor, delta), targets
        ).lb_jensen.mean()
        assert cert.lower_bound_at(delta) == pytest.approx(direct, rel=1e-9, abs=1e-12)
    if cert.eps is None:
        assert cert.lbj0 <= 0
        return
    assert cert.lower_bound_at(-cert.eps * np.sign(cert.h)) == pytest.approx(
        0.0, abs=1e-12 * (1 + abs(cert.lbj0))
    )
    for delta in random_deltas(rng, cert.eps, sc.support, 10, n_B):
        change = backdoor_loss_change(sc, model, delta).mean()
        assert change >= cert.lower_bound_at(delta) - 1e-12 and cert.lower_bound_at(delta) >= -1e-12
    if per_sample:
        shared = jensen_certificate(
            model, sc.W, sc.X_backdoor, sc.target, sc.support, per_sample=False
        )
        assert cert.eps <= shared.eps * (1 + 1e-12)


@SETTINGS
@given(SEEDS, st.floats(1e-2, 1e2))
def test_radii_invariant_to_eta_scaling(seed, factor):  # check 16
    sc = backdoor_scenario(np.random.default_rng(seed))
    scaled_rnd = dataclasses.replace(sc.rnd, eta=sc.rnd.eta * factor)
    radii = []
    for rnd in (sc.rnd, scaled_rnd):
        model = frozen_model(rnd)
        radii.append(
            (
                sign_certificate(model, sc.X_backdoor, sc.target, sc.support).eps,
                jensen_certificate(model, sc.W, sc.X_backdoor, sc.target, sc.support).eps,
            )
        )
    for before, after in zip(*radii, strict=True):
        assert (before is None) == (after is None)
        if before is not None:
            assert after == pytest.approx(before, rel=1e-9)


@pytest.mark.parametrize("factor", [0.01, 37.0])
def test_radii_invariant_to_spec_factors(factor):  # check 16 with the spec's factors
    sc = backdoor_scenario(np.random.default_rng(11))
    base = frozen_model(sc.rnd)
    scaled = frozen_model(dataclasses.replace(sc.rnd, p_B=sc.rnd.p_B * factor))
    for cert in (sign_certificate,):
        assert cert(scaled, sc.X_backdoor, sc.target, sc.support).eps == pytest.approx(
            cert(base, sc.X_backdoor, sc.target, sc.support).eps, rel=1e-9
        )
    assert jensen_certificate(
        scaled, sc.W, sc.X_backdoor, sc.target, sc.support
    ).eps == pytest.approx(
        jensen_certificate(base, sc.W, sc.X_backdoor, sc.target, sc.support).eps, rel=1e-9
    )


@SETTINGS
@given(SEEDS, st.integers(2, 12), st.floats(1e-3, 1.0), st.booleans())
def test_clean_bound_chain_and_attained_sup(seed, c, eps, per_sample):  # checks 17 and 18
    rng = np.random.default_rng(seed)
    sc = backdoor_scenario(rng, c=c)
    model = frozen_model(sc.rnd)
    bound = clean_bound(model, sc.X_test, sc.y_test, sc.support, per_sample=per_sample)
    C, simple = bound.bound(eps), bound.simple_bound(eps)
    assert C <= simple + 1e-12 * (1 + abs(simple))
    z = sc.X_test @ sc.W.T
    n_B = sc.rnd.n_B if per_sample else None
    for delta in random_deltas(rng, eps, sc.support, 5, n_B):
        u = model.logit_change(sc.X_test, delta)
        b = bounds_from_logits(z, u, sc.y_test)
        assert b.actual.mean() <= b.ub.mean() + 1e-12 and b.ub.mean() <= C + 1e-12
    per_sample_sup = (bound.margins + eps * bound.sensitivity).max(axis=1)
    for i in range(len(sc.X_test)):
        direction = eps * np.sign(sc.X_test[i]) * sc.support
        best = -np.inf
        for sign in (1.0, -1.0):
            if per_sample:
                # each delta_j = +-eps sign(r_jk - r_jy) sign(x_i): the sup is attained class by
                # class
                values = []
                for k in range(c):
                    r = model.residuals
                    delta = (np.sign(r[:, k] - r[:, sc.y_test[i]]) * sign)[:, None] * direction[
                        None, :
                    ]
                    values.append(
                        upper_bound(
                            model.logit_change(sc.X_test[i : i + 1], delta), sc.y_test[i : i + 1]
                        )[0]
                    )
                best = max(best, max(values))
            else:
                u = model.logit_change(sc.X_test[i : i + 1], sign * direction)
                best = max(best, upper_bound(u, sc.y_test[i : i + 1])[0])
        assert best == pytest.approx(per_sample_sup[i], rel=1e-9, abs=1e-12)


def test_radius_for_budget():
    sc = backdoor_scenario(np.random.default_rng(5))
    bound = clean_bound(frozen_model(sc.rnd), sc.X_test, sc.y_test, sc.support)
    assert bound.radius_for(bound.ub0 - 1e-3) is None
    eps = bound.radius_for(bound.ub0 + 0.01)
    assert bound.simple_bound(eps) == pytest.approx(bound.ub0 + 0.01, rel=1e-12)
    with pytest.raises(ValueError, match="eps"):
        bound.bound(-1.0)


@SETTINGS
@given(SEEDS, st.integers(2, 8))
def test_support_restriction_is_tighter_and_still_sound(seed, c):  # THEORY.md 6.6
    rng = np.random.default_rng(seed)
    sc = backdoor_scenario(rng, c=c)
    model = frozen_model(sc.rnd)
    trigger_only = np.zeros_like(sc.support)
    trigger_only[:2] = True  # errors known to sit on the trigger pixels
    full = sign_certificate(model, sc.X_backdoor, sc.target, None)
    restricted = sign_certificate(model, sc.X_backdoor, sc.target, trigger_only)
    if not full.premise:
        return
    assert restricted.eps >= full.eps
    for delta in random_deltas(rng, restricted.eps, trigger_only, 10):
        assert np.all(np.abs(backdoor_lower_bound(model, sc.X_backdoor, sc.target, delta)) <= 1e-9)
    jensen_full = jensen_certificate(model, sc.W, sc.X_backdoor, sc.target, None)
    jensen_restricted = jensen_certificate(model, sc.W, sc.X_backdoor, sc.target, trigger_only)
    assert jensen_restricted.h_l1 <= jensen_full.h_l1 + 1e-15
