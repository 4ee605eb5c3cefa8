"""The unit-box L-BFGS-B driver reproduces scipy.optimize.minimize bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from linear_fl import lbfgsb
from linear_fl.inversion import inversion_objective
from linear_fl.lbfgsb import minimize_unit_box
from linear_fl.model import augment, row_products

SHAPE = (2, 5, 5)


def _problem(seed: int):
    rng = np.random.default_rng(seed)
    X = rng.random((300, 50))
    X[X < 0.6] = 0.0
    return rng.random(75), (rng.standard_normal((4, 51)), augment(X), 1, SHAPE, 0.03)


@pytest.mark.parametrize("seed, maxiter", [(0, 3), (1, 10), (2, 500)])
def test_matches_scipy_minimize_bitwise(seed, maxiter):
    v0, args = _problem(seed)
    ref = minimize(
        inversion_objective,
        v0,
        args=args,
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, 1.0)] * v0.size,
        options={"maxiter": maxiter},
    )
    ours = minimize_unit_box(inversion_objective, v0, args=args, maxiter=maxiter)
    assert lbfgsb._SETULB is not None, (
        "this SciPy has no compatible setulb: the fallback path is used"
    )
    assert np.array_equal(ours.x, ref.x) and ours.fun == ref.fun
    assert (ours.nit, ours.nfev) == (ref.nit, ref.nfev)


def test_start_point_outside_the_box_is_clipped_and_fallback_agrees(monkeypatch):
    v0, args = _problem(3)
    v0 = v0 * 3 - 1
    fast = minimize_unit_box(inversion_objective, v0, args=args, maxiter=20)
    monkeypatch.setattr(lbfgsb, "_SETULB", None)
    slow = minimize_unit_box(inversion_objective, v0, args=args, maxiter=20)
    assert np.array_equal(fast.x, slow.x) and fast.nfev == slow.nfev
    assert fast.x.min() >= 0.0 and fast.x.max() <= 1.0


def test_row_products_are_bitwise_the_plain_product():
    rng = np.random.default_rng(4)
    X, M = rng.random((2000, 785)), rng.standard_normal((20, 785))
    Z = row_products(X, M)
    assert Z.flags.c_contiguous and np.array_equal(Z, X @ M.T)
