"""Multi-class logistic regression (linear softmax) in closed form, float64.

Notation of THEORY.md section 1 (paper App. A.14): a model is ``W`` of shape
``(c, d+1)`` whose LAST column is the bias; an input ``x`` is augmented to
``x~ = [x; 1]`` (:func:`augment`). Logits ``z = W x~``, softmax
``s(z)_k = exp(z_k) / sum_j exp(z_j)``, per-sample cross-entropy

    l(W; x, y) = LSE(W x~) - (W x~)_y,        LSE(z) = log sum_k exp(z_k),

and its gradient ``grad_W l = (s(W x~) - e_y) x~^T``. Every function is
vectorised over samples (rows of ``Xa``); LSE is shifted by the row maximum
so it never overflows.
"""

from __future__ import annotations

import numpy as np

from fldata.metrics import softmax


def augment(X: np.ndarray) -> np.ndarray:
    """Append the bias coordinate: ``(n, d) -> (n, d+1)`` with a last column of ones (float64)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(
            f"augment expects a 2-D array (n, d) of flattened inputs, got shape {X.shape}"
        )
    out = np.empty((X.shape[0], X.shape[1] + 1), dtype=np.float64)
    out[:, :-1] = X
    out[:, -1] = 1.0
    return out


def _check(W: np.ndarray, Xa: np.ndarray) -> None:
    if W.ndim != 2 or Xa.ndim != 2 or W.shape[1] != Xa.shape[1]:
        raise ValueError(
            "shape mismatch: W must be (c, d+1) and Xa (n, d+1) with the same d+1; got W "
            f"{W.shape}, Xa {Xa.shape}"
        )


def row_products(Xa: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``Xa M^T``, shape ``(n, k)``, C-contiguous, for a few rows ``M`` (k, d+1) and many rows
    ``Xa`` (n, d+1).

    Computed as ``(M Xa^T)^T``: the same dot products ``sum_j X_ij M_kj`` in the same order
    (OpenBLAS packs both operands alike; the twin tests and the golden ``theory.verify`` output
    check the bits), about 40% less CPU for these tall, thin shapes than ``Xa @ M.T``.
    """
    return np.ascontiguousarray((M @ Xa.T).T)


def logits(W: np.ndarray, Xa: np.ndarray) -> np.ndarray:
    """Logits ``Z = Xa W^T`` of shape ``(n, c)``; row i is ``z_i = W x~_i``."""
    _check(W, Xa)
    return row_products(Xa, W)


def log_sum_exp(Z: np.ndarray) -> np.ndarray:
    """Row-wise stable ``LSE(z) = m + log sum_k exp(z_k - m)`` with ``m = max_k z_k``; shape
    ``(n,)``.
    """
    zmax = Z.max(axis=1)
    return zmax + np.log(np.exp(Z - zmax[:, None]).sum(axis=1))


def softmax_probs(W: np.ndarray, Xa: np.ndarray) -> np.ndarray:
    """Softmax probabilities ``s(W x~_i)`` for every row, shape ``(n, c)``."""
    return softmax(logits(W, Xa))


def per_sample_loss(W: np.ndarray, Xa: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-entropy ``l_i = LSE(z_i) - z_{i, y_i}`` for every row, shape ``(n,)`` (THEORY.md
    section 1).
    """
    Z = logits(W, Xa)
    y = np.asarray(y)
    return log_sum_exp(Z) - Z[np.arange(Z.shape[0]), y]


def mean_loss(W: np.ndarray, Xa: np.ndarray, y: np.ndarray) -> float:
    """Dataset loss ``L(W; S) = (1/n) sum_i l(W; x_i, y_i)``."""
    return float(per_sample_loss(W, Xa, y).mean())


def residuals(W: np.ndarray, Xa: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Softmax residuals ``r_i = s(W x~_i) - e_{y_i}``, shape ``(n, c)``; each row sums to 0."""
    R = softmax_probs(W, Xa)
    R[np.arange(R.shape[0]), np.asarray(y)] -= 1.0
    return R


def mean_gradient(W: np.ndarray, Xa: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean cross-entropy gradient ``G = (1/n) sum_i (s(W x~_i) - e_{y_i}) x~_i^T = R^T Xa / n``,
    shape ``(c, d+1)``.

    This is ``G_bar_c`` of THEORY.md section 2 when evaluated on clean benign
    data and ``G_bar_a`` on recovered-trigger-stamped data.
    """
    if Xa.shape[0] == 0:
        raise ValueError("mean_gradient needs at least one sample (got an empty batch)")
    return residuals(W, Xa, y).T @ Xa / Xa.shape[0]


def predict(W: np.ndarray, Xa: np.ndarray) -> np.ndarray:
    """Predicted class ``argmax_k (W x~)_k`` per row."""
    return logits(W, Xa).argmax(axis=1)
