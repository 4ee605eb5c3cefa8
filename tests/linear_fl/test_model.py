"""Closed-form loss / gradient of the linear softmax model (THEORY.md section 1)."""

from __future__ import annotations

import numpy as np
import sympy as sp

from linear_fl.model import (
    augment,
    logits,
    mean_gradient,
    mean_loss,
    per_sample_loss,
    residuals,
    softmax_probs,
)


def test_augment_appends_bias_one():
    X = np.arange(6.0).reshape(2, 3)
    Xa = augment(X)
    assert Xa.shape == (2, 4) and np.all(Xa[:, -1] == 1.0) and np.array_equal(Xa[:, :3], X)


def test_gradient_matches_central_finite_differences():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(4, 6))
    Xa = augment(rng.uniform(size=(9, 5)))
    y = rng.integers(0, 4, size=9)
    G = mean_gradient(W, Xa, y)
    h = 1e-6
    num = np.zeros_like(W)
    for idx in np.ndindex(*W.shape):
        E = np.zeros_like(W)
        E[idx] = h
        num[idx] = (mean_loss(W + E, Xa, y) - mean_loss(W - E, Xa, y)) / (2 * h)
    assert np.max(np.abs(num - G)) < 1e-8


def test_gradient_matches_sympy_derivation():
    c, d1, n = 3, 3, 2
    Ws = sp.Matrix(c, d1, lambda i, j: sp.Symbol(f"w{i}{j}"))
    rng = np.random.default_rng(2)
    Xa = augment(rng.integers(0, 3, size=(n, d1 - 1)).astype(float))
    y = np.array([0, 2])
    loss = 0
    for i in range(n):
        z = Ws * sp.Matrix(Xa[i])
        loss += sp.log(sum(sp.exp(z[k]) for k in range(c))) - z[int(y[i])]
    loss = loss / n
    W = rng.normal(size=(c, d1))
    subs = {Ws[i, j]: W[i, j] for i in range(c) for j in range(d1)}
    G_sym = np.array(
        [[float(sp.diff(loss, Ws[i, j]).evalf(subs=subs)) for j in range(d1)] for i in range(c)]
    )
    assert np.allclose(mean_gradient(W, Xa, y), G_sym, rtol=1e-12, atol=1e-12)
    assert abs(mean_loss(W, Xa, y) - float(loss.evalf(subs=subs))) < 1e-12


def test_stable_for_huge_logits_and_residuals_sum_to_zero():
    W = np.array([[1000.0, 0.0], [-1000.0, 0.0], [0.0, 0.0]])
    Xa = augment(np.array([[1.0], [-1.0]]))
    y = np.array([1, 0])
    loss = per_sample_loss(W, Xa, y)
    assert np.all(np.isfinite(loss)) and np.allclose(loss, [2000.0, 2000.0])
    P = softmax_probs(W, Xa)
    assert np.allclose(P.sum(axis=1), 1.0)
    assert np.allclose(residuals(W, Xa, y).sum(axis=1), 0.0)
    assert logits(W, Xa).shape == (2, 3)
