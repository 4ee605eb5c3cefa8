"""Symbolic derivations (sympy) and exact-arithmetic cross-checks of the float64 Theorem-1 code."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory import symbolic
from theory.theorem1 import bounds_from_logits


@pytest.mark.parametrize("c,label", [(2, 0), (3, 1), (4, 3)])
def test_loss_change_identity(c, label):
    assert symbolic.loss_change_identity_holds(c, label)


def test_logistic_gradient_and_zero_column_sums():
    assert symbolic.logistic_gradient_holds(3, 2, 1)


def test_frozen_affine_law():
    assert symbolic.frozen_affine_law_holds(3, 2, 2)


positive_rationals = st.fractions(
    min_value=Fraction(1, 50), max_value=50, max_denominator=60
).filter(lambda f: f > 0)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 6).flatmap(
        lambda c: st.tuples(
            st.lists(positive_rationals, min_size=c, max_size=c),
            st.lists(positive_rationals, min_size=c, max_size=c),
            st.integers(0, c - 1),
        )
    )
)
@pytest.mark.slow
def test_exact_instances_and_float_cross_check(instance):
    a, b, y = instance
    exact = symbolic.exact_theorem1(a, b, y)
    assert exact.mediant_holds and exact.ordering_holds()
    z = np.log(np.array([float(v) for v in a]))[None, :]
    u = np.log(np.array([float(v) for v in b]))[None, :]
    floats = bounds_from_logits(z, u, np.array([y]))
    for name in ("lb", "lb_jensen", "actual", "ub", "ub_r2"):
        assert getattr(floats, name)[0] == pytest.approx(
            float(getattr(exact, name)), rel=1e-12, abs=1e-13
        )


def test_exact_instance_rejects_non_positive():
    with pytest.raises(ValueError, match="positive"):
        symbolic.exact_theorem1([1, 0], [1, 2], 0)


@settings(max_examples=15, deadline=None)
@given(
    st.integers(2, 4).flatmap(
        lambda c: st.tuples(
            st.lists(
                st.lists(st.fractions(-5, 5, max_denominator=20), min_size=3, max_size=3),
                min_size=c,
                max_size=c,
            ),
            st.lists(st.fractions(-2, 2, max_denominator=20), min_size=3, max_size=3),
            st.integers(0, c - 1),
        )
    )
)
@pytest.mark.slow
def test_float_gradient_matches_symbolic_derivative(instance):
    from theory.frozen import mean_gradient

    W, x, y = instance
    exact = np.array([[float(v) for v in row] for row in symbolic.exact_gradient(W, x, y)])
    W_f = np.array([[float(v) for v in row] for row in W])
    x_f = np.array([[float(v) for v in x]])
    assert np.allclose(mean_gradient(W_f, x_f, np.array([y])), exact, rtol=1e-12, atol=1e-14)
