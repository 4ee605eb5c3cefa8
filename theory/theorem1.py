"""Theorem 1 of FLIP: exact bounds on the cross-entropy change between two linear models.

Paper: Thm 1, eq. (3); proof in App. A.14, eqs. (16)-(28). Spec: THEORY.md section 3.

For one sample ``(x, y)`` write ``z = W x``, ``u = \\Delta W x`` with ``\\Delta W = W' - W``, and
``s = softmax(z)``. The loss change ``\\Delta\\ell = \\ell(W'; x, y) - \\ell(W; x, y)`` obeys

* exact identity:  ``\\Delta\\ell = -u_y + \\log\\sum_k s_k e^{u_k} = -u_y + LSE(z+u) - LSE(z)``;
* (T1):            ``lb = \\min_k u_k - u_y  <=  \\Delta\\ell  <=  \\max_k u_k - u_y = ub``
  (mediant inequality; the paper calls it "Cauchy-Schwarz");
* R1 (Jensen):     ``lb <= lb^J = (s - e_y)^T u <= \\Delta\\ell``;
* R2 (Hoeffding):  ``\\Delta\\ell <= (s - e_y)^T u + (\\max u - \\min u)^2 / 8``.

All are exact inequalities for any real ``W, \\Delta W, x, y`` (no approximation); the dataset form
averages them (``LB(S) <= L(W';S) - L(W;S) <= UB(S)``). ``lb <= 0 <= ub`` always (THEORY.md F1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax, logsumexp, softmax

from theory.validation import check_labels, check_matrix, check_same_shape

# Relative tolerance of the per-sample ordering check: the quantities are computed in float64 from
# logits of magnitude ``scale``; a true violation of an exact inequality is far larger than this.
ORDERING_RTOL = 1e-9


@dataclass(frozen=True)
class LossChangeBounds:
    """Per-sample Theorem-1 quantities for ``n`` samples (all arrays of shape ``(n,)``).

    ``lb`` (T1 lower), ``lb_jensen`` (R1), ``actual`` (exact ``\\Delta\\ell``), ``ub`` (T1 upper),
    ``ub_r2`` (R2 Hoeffding upper), ``scale`` (``1 + max|u| + max z - min z``, used for the
    floating-point tolerance of the ordering check).
    """

    lb: np.ndarray
    lb_jensen: np.ndarray
    actual: np.ndarray
    ub: np.ndarray
    ub_r2: np.ndarray
    scale: np.ndarray

    @property
    def ub_best(self) -> np.ndarray:
        """``min(ub, R2)``: R2 is not uniformly below ub, so the tightest valid upper bound."""
        return np.minimum(self.ub, self.ub_r2)

    def violation_mask(self, rtol: float = ORDERING_RTOL) -> np.ndarray:
        """Samples where ``lb <= lb^J <= actual <= min(ub, R2)`` or ``lb <= 0 <= ub`` fails
        by more than ``rtol * scale`` (THEORY.md section 8, checks 1 and 3)."""
        tol = rtol * self.scale
        chain = (self.lb, self.lb_jensen, self.actual, self.ub_best)
        bad = np.zeros(self.lb.shape, dtype=bool)
        for lower, upper in zip(chain[:-1], chain[1:], strict=True):
            bad |= lower > upper + tol
        bad |= self.lb > tol
        bad |= self.ub < -tol
        return bad

    def violations(self, rtol: float = ORDERING_RTOL) -> int:
        """Number of samples violating the per-sample ordering (must be 0)."""
        return int(self.violation_mask(rtol).sum())

    def summary(self) -> dict[str, float | int]:
        """Dataset averages (the dataset form of Thm 1) and the violation count.

        Keys follow the JSON schema: ``lb, lb_jensen, actual, ub, ub_r2, violations``; ``ub_r2``
        is the average of ``min(ub, R2)`` per sample (the valid tightest upper bound).
        """
        return {
            "lb": float(self.lb.mean()),
            "lb_jensen": float(self.lb_jensen.mean()),
            "actual": float(self.actual.mean()),
            "ub": float(self.ub.mean()),
            "ub_r2": float(self.ub_best.mean()),
            "violations": self.violations(),
            "n": int(self.lb.size),
        }


def logit_change(delta_W: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``u_i = \\Delta W x_i`` for all rows of ``X``; returns ``(n, c)``."""
    check_matrix("delta_W", delta_W)
    check_matrix("X", X)
    if X.shape[1] != delta_W.shape[1]:
        raise ValueError(
            f"X has {X.shape[1]} columns but delta_W has {delta_W.shape[1]}; both must use the "
            "same input dimension (bias included or not in both)"
        )
    return X @ delta_W.T


def loss_change(logits: np.ndarray, logit_delta: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Exact per-sample loss change via the identity (THEORY.md section 3).

    ``\\Delta\\ell = -u_y + LSE(\\log s(z) + u)`` which equals ``-u_y + LSE(z+u) - LSE(z)``
    but avoids cancelling two large log-sum-exps.
    """
    z, u = _check_logits(logits, logit_delta, labels)
    rows = np.arange(z.shape[0])
    return logsumexp(log_softmax(z, axis=1) + u, axis=1) - u[rows, labels]


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample ``\\ell = LSE(z) - z_y`` (stable)."""
    check_matrix("logits", logits)
    labels = check_labels(labels, logits.shape[0], logits.shape[1])
    return logsumexp(logits, axis=1) - logits[np.arange(logits.shape[0]), labels]


def lower_bound(logit_delta: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(T1) ``lb_i = \\min_k u_{ik} - u_{i y_i}`` (Thm 1 eq. 3)."""
    u = np.asarray(logit_delta, dtype=np.float64)
    labels = check_labels(labels, u.shape[0], u.shape[1])
    return u.min(axis=1) - u[np.arange(u.shape[0]), labels]


def upper_bound(logit_delta: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(T1) ``ub_i = \\max_k u_{ik} - u_{i y_i}`` (Thm 1 eq. 3)."""
    u = np.asarray(logit_delta, dtype=np.float64)
    labels = check_labels(labels, u.shape[0], u.shape[1])
    return u.max(axis=1) - u[np.arange(u.shape[0]), labels]


def one_hot_bounds(
    delta_W: np.ndarray, X: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's one-hot form (A.14 eqs. 24-27): ``lb_i = (1^-_i - e_{y_i})^T \\Delta W x_i`` and
    ``ub_i = (1^+_i - e_{y_i})^T \\Delta W x_i`` with ``1^-_i`` / ``1^+_i`` the one-hot vectors at
    ``\\arg\\min_k`` / ``\\arg\\max_k (\\Delta W x_i)_k``."""
    u = logit_change(delta_W, X)
    c = u.shape[1]
    labels = check_labels(labels, u.shape[0], c)
    eye = np.eye(c)
    e_y = eye[labels]
    lb = np.einsum("ik,ik->i", eye[u.argmin(axis=1)] - e_y, u)
    ub = np.einsum("ik,ik->i", eye[u.argmax(axis=1)] - e_y, u)
    return lb, ub


def bounds_from_logits(
    logits: np.ndarray, logit_delta: np.ndarray, labels: np.ndarray
) -> LossChangeBounds:
    """All Theorem-1 quantities from ``z = W x`` and ``u = \\Delta W x`` (see module docstring)."""
    z, u = _check_logits(logits, logit_delta, labels)
    rows = np.arange(z.shape[0])
    s = softmax(z, axis=1)
    u_y = u[rows, labels]
    u_min, u_max = u.min(axis=1), u.max(axis=1)
    lb_jensen = np.einsum("ik,ik->i", s, u) - u_y
    return LossChangeBounds(
        lb=u_min - u_y,
        lb_jensen=lb_jensen,
        actual=loss_change(z, u, labels),
        ub=u_max - u_y,
        ub_r2=lb_jensen + (u_max - u_min) ** 2 / 8.0,
        scale=1.0 + np.abs(u).max(axis=1) + (z.max(axis=1) - z.min(axis=1)),
    )


def theorem1_bounds(
    W: np.ndarray, W_prime: np.ndarray, X: np.ndarray, labels: np.ndarray
) -> LossChangeBounds:
    """Theorem 1 for the model pair ``(W, W')`` on samples ``X`` (rows, same input dim as ``W``)
    with labels ``labels`` (for a backdoor set pass the target for every row)."""
    check_matrix("W", W)
    check_same_shape("W", W, "W_prime", W_prime)
    return bounds_from_logits(logit_change(W, X), logit_change(W_prime - W, X), labels)


def _check_logits(
    logits: np.ndarray, change: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    u = np.asarray(change, dtype=np.float64)
    check_matrix("logits", z)
    check_same_shape("logits", z, "logit_change", u)
    if z.shape[1] < 2:
        raise ValueError(f"need at least 2 classes, got {z.shape[1]}")
    check_labels(labels, z.shape[0], z.shape[1])
    return z, u
