"""THEORY.md section 8, checks 1-8: Theorem 1 (bounds, identity, F1-F6, R1/R2)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from theory_instances import pair_instances

from theory.theorem1 import (
    bounds_from_logits,
    cross_entropy,
    lower_bound,
    one_hot_bounds,
    theorem1_bounds,
    upper_bound,
)

SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(pair_instances())
def test_ordering_per_sample_and_dataset(inst):  # checks 1 and 3
    b = theorem1_bounds(inst.W, inst.W + inst.delta_W, inst.X, inst.y)
    assert b.violations() == 0
    s = b.summary()
    tol = 1e-9 * float(b.scale.max())
    assert s["lb"] <= s["lb_jensen"] + tol <= s["actual"] + 2 * tol <= s["ub_r2"] + 3 * tol
    assert s["ub_r2"] <= s["ub"] + tol
    assert s["lb"] <= 0.0 <= s["ub"]


@SETTINGS
@given(pair_instances())
def test_identity_matches_difference_of_cross_entropies(inst):  # check 2
    z, zp = inst.X @ inst.W.T, inst.X @ (inst.W + inst.delta_W).T
    direct = cross_entropy(zp, inst.y) - cross_entropy(z, inst.y)
    identity = theorem1_bounds(inst.W, inst.W + inst.delta_W, inst.X, inst.y).actual
    scale = 1.0 + np.abs(z).max(axis=1) + np.abs(zp).max(axis=1)
    assert np.all(np.abs(direct - identity) <= 1e-12 * scale)


def test_identity_stable_for_huge_logits():  # check 2: a naive softmax would overflow
    z = np.array([[1000.0, -1000.0, 0.0]])
    u = np.array([[3.0, -2.0, 0.5]])
    b = bounds_from_logits(z, u, np.array([1]))
    # l(z) = 1000 + 1000 (+ e^-1000 terms), l(z+u) = 1003 + 1002 (+ negligible): change = 5
    assert b.actual[0] == pytest.approx(5.0, rel=1e-12)


@SETTINGS
@given(pair_instances(), st.integers(0, 2**32 - 1))
def test_constant_logit_change_gives_zero_else_strict(inst, seed):  # check 4 (F3)
    w = np.random.default_rng(seed).standard_normal(inst.W.shape[1])
    const = theorem1_bounds(inst.W, inst.W + np.outer(np.ones(inst.W.shape[0]), w), inst.X, inst.y)
    tol = 1e-9 * const.scale
    assert np.all(np.abs(const.lb) <= tol) and np.all(np.abs(const.ub) <= tol)
    assert np.all(np.abs(const.actual) <= tol)


# check 4 (F3), moderate scale so the gaps are resolvable
def test_strict_inequalities_when_u_not_constant():
    rng = np.random.default_rng(3)
    for c in range(2, 13):
        W, dW = rng.standard_normal((c, 5)), rng.standard_normal((c, 5))
        X, y = rng.standard_normal((50, 5)), rng.integers(0, c, 50)
        b = theorem1_bounds(W, W + dW, X, y)
        assert np.all(b.lb < b.actual) and np.all(b.actual < b.ub)


@SETTINGS
@given(pair_instances(), st.integers(0, 2**32 - 1))
def test_invariance_under_constant_rows(inst, seed):  # check 5 (F6)
    rng = np.random.default_rng(seed)
    ones = np.ones(inst.W.shape[0])
    base = theorem1_bounds(inst.W, inst.W + inst.delta_W, inst.X, inst.y)
    W2 = inst.W + np.outer(ones, rng.standard_normal(inst.W.shape[1]))
    dW2 = inst.delta_W + np.outer(ones, rng.standard_normal(inst.W.shape[1]))
    moved = theorem1_bounds(W2, W2 + dW2, inst.X, inst.y)
    u = inst.X @ inst.delta_W.T
    tol = 1e-9 * (base.scale + moved.scale + np.abs(u).max(axis=1))
    for name in ("lb", "ub", "actual"):
        assert np.all(np.abs(getattr(base, name) - getattr(moved, name)) <= tol)


@SETTINGS
@given(pair_instances(), st.floats(1e-3, 1e3))
def test_homogeneity_and_sign_flip(inst, alpha):  # check 6 (F5)
    u = inst.X @ inst.delta_W.T
    lb, ub = lower_bound(u, inst.y), upper_bound(u, inst.y)
    tol = 1e-12 * (1 + alpha) * (1 + np.abs(u).max(axis=1))
    assert np.all(np.abs(lower_bound(alpha * u, inst.y) - alpha * lb) <= tol)
    assert np.all(np.abs(lower_bound(-u, inst.y) + ub) <= tol)


@SETTINGS
@given(pair_instances())
def test_one_hot_form_equals_min_max_form(inst):  # paper's notation (A.14 eqs. 24-27)
    lb, ub = one_hot_bounds(inst.delta_W, inst.X, inst.y)
    u = inst.X @ inst.delta_W.T
    assert np.allclose(lb, lower_bound(u, inst.y), rtol=0, atol=1e-12 * (1 + np.abs(u).max()))
    assert np.allclose(ub, upper_bound(u, inst.y), rtol=0, atol=1e-12 * (1 + np.abs(u).max()))


def test_sharpness():  # check 7 (F4): gaps vanish as the logit of argmin u / argmax u grows
    u = np.array([[0.7, -1.3, 0.2, 0.9]])
    y = np.array([2])
    gaps_lb, gaps_ub = [], []
    for big in (0.0, 5.0, 10.0, 20.0, 30.0):
        z_min = np.zeros((1, 4))
        z_min[0, 1] = big
        z_max = np.zeros((1, 4))
        z_max[0, 3] = big
        b_min, b_max = bounds_from_logits(z_min, u, y), bounds_from_logits(z_max, u, y)
        gaps_lb.append(b_min.actual[0] - b_min.lb[0])
        gaps_ub.append(b_max.ub[0] - b_max.actual[0])
    assert all(g > 0 for g in gaps_lb[:-1]) and np.all(np.diff(gaps_lb) < 0) and gaps_lb[-1] < 1e-10
    assert all(g > 0 for g in gaps_ub[:-1]) and np.all(np.diff(gaps_ub) < 0) and gaps_ub[-1] < 1e-10


@SETTINGS
@given(pair_instances())
def test_label_at_argmin_gives_zero_lb_and_loss_increase(inst):  # check 8 (F2)
    u = inst.X @ inst.delta_W.T
    y = u.argmin(axis=1)
    b = bounds_from_logits(inst.X @ inst.W.T, u, y)
    assert np.all(b.lb == 0.0)
    nonconstant = (u.max(axis=1) - u.min(axis=1)) > 1e-6 * (1 + np.abs(u).max(axis=1))
    assert np.all(b.actual[nonconstant] >= -1e-9 * b.scale[nonconstant])


def test_jensen_bound_can_be_positive_while_lb_is_not():  # R1 is the non-degenerate refinement
    z = np.array([[4.0, 0.0, 0.0]])
    u = np.array([[2.0, 0.0, -1.0]])
    b = bounds_from_logits(z, u, np.array([1]))
    assert b.lb[0] < 0 < b.lb_jensen[0] <= b.actual[0]


@pytest.mark.parametrize(
    "bad",
    [
        dict(W=np.zeros((3, 2)), Wp=np.zeros((3, 3)), X=np.zeros((1, 2)), y=np.array([0])),
        dict(W=np.zeros((3, 2)), Wp=np.zeros((3, 2)), X=np.zeros((1, 2)), y=np.array([3])),
        dict(W=np.zeros((3, 2)), Wp=np.zeros((3, 2)), X=np.full((1, 2), np.nan), y=np.array([0])),
        dict(W=np.zeros((3, 2)), Wp=np.zeros((3, 2)), X=np.zeros((1, 2)), y=np.array([0.5])),
    ],
)
def test_bad_input_raises(bad):
    with pytest.raises(ValueError):
        theorem1_bounds(bad["W"], bad["Wp"], bad["X"], bad["y"])
