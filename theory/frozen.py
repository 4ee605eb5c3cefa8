"""The one-round weight difference DeltaW and its frozen-residual models (THEORY.md sections 2 and
5).

Setting (paper eqs. 8-14): one FedAvg round from ``W_t``, benign client B with ``n_B`` samples,
weight ``p_B``, learning rate ``eta``, one full-batch gradient step, hardening weights
``lambda_c`` (clean) and ``lambda_a`` (augmented). With residuals ``r_j = s(W_t x) - e_{y_j}``:

* closed form (exact for E=1, oblivious attacker):
  ``\\Delta W = -p_B \\eta [(\\lambda_c - 1) \\bar G_c + \\lambda_a \\bar G_a]`` (paper eq. 14);
* as a function of the trigger errors ``\\delta_j = \\hat x_j - x^t_j`` (exact, nonlinear):
  ``\\Delta W(\\delta) = \\Delta W_0 - \\eta_a \\sum_j r_j(\\delta_j)(x^t_j + \\delta_j)^T`` with
  ``\\eta_a = p_B \\eta \\lambda_a / n_B`` and ``\\Delta W_0 = -p_B \\eta (\\lambda_c - 1)\\bar
  G_c``;
* frozen-residual model: ``\\Delta W_F(\\delta) = \\Delta W_0 - \\eta_a \\sum_j \\bar r_j (x^t_j +
  \\delta_j)^T``; for a shared ``\\delta`` it is ``\\Delta W_F(0) - \\eta_a \\rho \\delta^T`` with
  ``\\rho = \\sum_j \\bar r_j`` (``1^T \\rho = 0``), so ``u(\\delta) = u(0) - \\eta_a (\\delta^T x)
  \\rho``.

Residual choices: ``"F-hat"`` (default; ``\\bar r_j = s(W_t \\hat x_j) - e_{y_j}``, reproduces the
realised DeltaW exactly at the realised delta, so certificates are rigorous for the realised run),
``"F0"`` (``\\bar r_j = s(W_t x^t_j) - e_{y_j}``, error O(|delta|)) and the true first-order Taylor
model (:func:`taylor_deltaW`, error O(|delta|^2)).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import softmax

from theory.validation import check_labels, check_matrix, check_same_shape

if TYPE_CHECKING:
    from linear_fl.probe import Probe

FROZEN_MODELS: tuple[str, ...] = ("F-hat", "F0")
CONVENTIONS: dict[str, tuple[float, float]] = {"paper": (1.0, 1.0), "union-mean": (0.5, 0.5)}


@dataclass(frozen=True)
class HardeningRound:
    """Everything the closed form needs about one benign hardening round.

    ``W_start`` is ``W_t`` (c, D); ``X_clean``, ``X_true``, ``X_hat`` are the benign samples
    ``x_j``, ``x^t_j = A_true(x_j)`` and ``\\hat x_j = A_rec(x_j)`` (n_B, D), all labelled ``y``.
    """

    W_start: np.ndarray
    X_clean: np.ndarray
    y: np.ndarray
    X_true: np.ndarray
    X_hat: np.ndarray
    eta: float
    p_B: float
    lambda_c: float = 1.0
    lambda_a: float = 1.0

    def __post_init__(self) -> None:
        check_matrix("W_start", self.W_start)
        for name in ("X_clean", "X_true", "X_hat"):
            X = check_matrix(name, getattr(self, name))
            if X.shape[1] != self.W_start.shape[1]:
                raise ValueError(
                    f"{name} has {X.shape[1]} columns, W_start has {self.W_start.shape[1]}"
                )
        check_same_shape("X_clean", self.X_clean, "X_true", self.X_true)
        check_same_shape("X_clean", self.X_clean, "X_hat", self.X_hat)
        check_labels(self.y, self.X_clean.shape[0], self.W_start.shape[0])
        if not (self.eta > 0 and self.p_B > 0 and self.lambda_a > 0 and self.lambda_c >= 0):
            raise ValueError(
                f"need eta > 0, p_B > 0, lambda_a > 0 and lambda_c >= 0, got eta={self.eta}, "
                f"p_B={self.p_B}, lambda_c={self.lambda_c}, lambda_a={self.lambda_a}"
            )

    @property
    def n_B(self) -> int:
        return int(self.X_clean.shape[0])

    @property
    def eta_a(self) -> float:
        """``\\eta_a = p_B \\eta \\lambda_a / n_B`` (THEORY.md section 5)."""
        return self.p_B * self.eta * self.lambda_a / self.n_B

    @cached_property
    def delta(self) -> np.ndarray:
        """Per-sample stamped-input errors ``\\delta_j = \\hat x_j - x^t_j`` (n_B, D), computed
        once.
        """
        return self.X_hat - self.X_true

    @classmethod
    def from_probe(cls, probe: Probe) -> HardeningRound:
        """Build from a ``linear_fl.probe.Probe`` (fields W_start, X_benign, y_benign,
        X_benign_true, X_benign_hat, eta, p_B, lambda_c, lambda_a)."""
        return cls(
            W_start=np.asarray(probe.W_start, dtype=np.float64),
            X_clean=np.asarray(probe.X_benign, dtype=np.float64),
            y=np.asarray(probe.y_benign),
            X_true=np.asarray(probe.X_benign_true, dtype=np.float64),
            X_hat=np.asarray(probe.X_benign_hat, dtype=np.float64),
            eta=float(probe.eta),
            p_B=float(probe.p_B),
            lambda_c=float(probe.lambda_c),
            lambda_a=float(probe.lambda_a),
        )


def softmax_residuals(W: np.ndarray, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``r_j = s(W x_j) - e_{y_j}`` for every row (n, c); each row sums to 0."""
    probs = softmax(X @ W.T, axis=1)
    probs[np.arange(X.shape[0]), labels] -= 1.0
    return probs


def mean_gradient(W: np.ndarray, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``\\bar G = (1/n) \\sum_j (s(W x_j) - e_{y_j}) x_j^T`` (c, D): the cross-entropy gradient."""
    return softmax_residuals(W, X, labels).T @ X / X.shape[0]


def base_deltaW(rnd: HardeningRound) -> np.ndarray:
    """``\\Delta W_0 = -p_B \\eta (\\lambda_c - 1) \\bar G_c`` (zero in the paper convention)."""
    if rnd.lambda_c == 1.0:
        return np.zeros_like(rnd.W_start)
    return (
        -rnd.p_B * rnd.eta * (rnd.lambda_c - 1.0) * mean_gradient(rnd.W_start, rnd.X_clean, rnd.y)
    )


def deltaW_closed_form(rnd: HardeningRound) -> np.ndarray:
    """Closed form ``\\Delta W = -p_B \\eta [(\\lambda_c-1)\\bar G_c + \\lambda_a \\bar G_a]``
    (THEORY.md section 2, paper eq. 14), with ``\\bar G_a`` the mean gradient on the
    recovered-trigger samples."""
    return base_deltaW(rnd) - rnd.p_B * rnd.eta * rnd.lambda_a * mean_gradient(
        rnd.W_start, rnd.X_hat, rnd.y
    )


def _per_sample(delta: np.ndarray, rnd: HardeningRound) -> np.ndarray:
    delta = np.asarray(delta, dtype=np.float64)
    if delta.shape == (rnd.W_start.shape[1],):
        return np.broadcast_to(delta, rnd.X_true.shape)
    if delta.shape != rnd.X_true.shape:
        raise ValueError(
            f"delta must have shape ({rnd.W_start.shape[1]},) (shared) or {rnd.X_true.shape} (one "
            f"row per benign sample), got {delta.shape}"
        )
    return delta


def deltaW_exact(rnd: HardeningRound, delta: np.ndarray) -> np.ndarray:
    """Exact nonlinear ``\\Delta W(\\delta) = \\Delta W_0 - \\eta_a \\sum_j
    r_j(\\delta_j)(x^t_j+\\delta_j)^T`` with ``r_j(\\delta_j) = s(W_t(x^t_j+\\delta_j)) - e_{y_j}``
    (THEORY.md section 5)."""
    X = rnd.X_true + _per_sample(delta, rnd)
    return base_deltaW(rnd) - rnd.eta_a * softmax_residuals(rnd.W_start, X, rnd.y).T @ X


def taylor_deltaW(rnd: HardeningRound, delta: np.ndarray) -> np.ndarray:
    """True first-order Taylor model at ``\\delta = 0`` (THEORY.md section 5, error O(|delta|^2)):
    ``\\Delta W(0) - \\eta_a \\sum_j [r_j(0)\\delta_j^T + (J_j W_t \\delta_j)(x^t_j)^T]`` with
    ``J_j = diag(s_j) - s_j s_j^T`` and ``s_j = s(W_t x^t_j)``."""
    D = _per_sample(delta, rnd)
    probs = softmax(rnd.X_true @ rnd.W_start.T, axis=1)
    residuals = probs.copy()
    residuals[np.arange(rnd.n_B), rnd.y] -= 1.0
    v = D @ rnd.W_start.T  # W_t delta_j, (n_B, c)
    jacobian_v = probs * v - probs * np.einsum("jk,jk->j", probs, v)[:, None]  # J_j W_t delta_j
    first_order = residuals.T @ D + jacobian_v.T @ rnd.X_true
    return deltaW_exact(rnd, np.zeros(rnd.W_start.shape[1])) - rnd.eta_a * first_order


@dataclass(frozen=True)
class FrozenResidualModel:
    """``\\Delta W_F(\\delta) = base - \\eta_a \\sum_j \\bar r_j \\delta_j^T`` where
    ``base = \\Delta W_F(0) = \\Delta W_0 - \\eta_a \\sum_j \\bar r_j (x^t_j)^T`` (THEORY.md section
    5)."""

    name: str
    base: np.ndarray  # Delta W_F(0), (c, D)
    residuals: np.ndarray  # frozen r-bar_j, (n_B, c)
    eta_a: float

    @property
    def rho(self) -> np.ndarray:
        """``\\rho = \\sum_j \\bar r_j`` (c,), with ``1^T\\rho = 0``."""
        return self.residuals.sum(axis=0)

    def deltaW(self, delta: np.ndarray) -> np.ndarray:
        """``\\Delta W_F(\\delta)`` for a shared ``\\delta`` (D,) or per-sample ``\\delta_j`` (n_B,
        D).
        """
        delta = np.asarray(delta, dtype=np.float64)
        if delta.shape == (self.base.shape[1],):
            return self.base - self.eta_a * np.outer(self.rho, delta)
        if delta.shape == (self.residuals.shape[0], self.base.shape[1]):
            return self.base - self.eta_a * self.residuals.T @ delta
        raise ValueError(
            f"delta must have shape ({self.base.shape[1]},) or ({self.residuals.shape[0]}, "
            f"{self.base.shape[1]}), got {delta.shape}"
        )

    def logit_change(self, X: np.ndarray, delta: np.ndarray | None = None) -> np.ndarray:
        """``u_i(\\delta) = \\Delta W_F(\\delta) x_i``; for shared delta this is the affine law
        ``u_i(0) - \\eta_a (\\delta^T x_i)\\rho``."""
        if delta is None:
            return X @ self.base.T
        delta = np.asarray(delta, dtype=np.float64)
        if delta.ndim == 1:
            return X @ self.base.T - self.eta_a * np.outer(X @ delta, self.rho)
        return X @ self.deltaW(delta).T

    def spread(self, per_sample: bool) -> np.ndarray:
        """Class-pair sensitivity ``S_{kl}`` (c, c) of ``u_k - u_l`` to the trigger error:
        shared delta: ``|\\rho_k - \\rho_l|``; per-sample delta (THEORY.md 6.5):
        ``\\sum_j |\\bar r_{jk} - \\bar r_{jl}|``."""
        if not per_sample:
            return np.abs(self.rho[:, None] - self.rho[None, :])
        r = self.residuals
        return np.abs(r[:, :, None] - r[:, None, :]).sum(axis=0)


def frozen_model(rnd: HardeningRound, kind: str = "F-hat") -> FrozenResidualModel:
    """Frozen-residual model of ``rnd``: ``kind`` is ``"F-hat"`` (residuals at ``\\hat x_j``) or
    ``"F0"`` (residuals at ``x^t_j``); THEORY.md section 5 table."""
    if kind not in FROZEN_MODELS:
        raise ValueError(f"unknown frozen model {kind!r}; choose one of {FROZEN_MODELS}")
    at = rnd.X_hat if kind == "F-hat" else rnd.X_true
    residuals = softmax_residuals(rnd.W_start, at, rnd.y)
    base = base_deltaW(rnd) - rnd.eta_a * residuals.T @ rnd.X_true
    return FrozenResidualModel(name=kind, base=base, residuals=residuals, eta_a=rnd.eta_a)


def shared_delta(delta_rows: np.ndarray, atol: float = 1e-12) -> np.ndarray | None:
    """The common row if every ``\\delta_j`` equals the first one within ``atol`` (additive trigger
    or stamp with the correct mask, THEORY.md section 2; ``atol`` absorbs the round-off of computing
    ``\\hat x_j - x^t_j``), else ``None`` (sample-dependent errors, section 6.5)."""
    delta_rows = np.asarray(delta_rows, dtype=np.float64)
    if delta_rows.ndim != 2 or delta_rows.shape[0] == 0:
        raise ValueError(
            f"delta_rows must be a non-empty (n, D) array, got shape {delta_rows.shape}"
        )
    first = delta_rows[0]
    for start in range(0, delta_rows.shape[0], 1024):  # chunks: sample-dependent errors exit early
        if float(np.abs(delta_rows[start : start + 1024] - first).max()) > atol:
            return None
    return first.copy()


def relative_error(approx: np.ndarray, exact: np.ndarray) -> float:
    """``||approx - exact||_F / max(||exact||_F, tiny)``."""
    denom = max(float(np.linalg.norm(exact)), np.finfo(np.float64).tiny)
    return float(np.linalg.norm(np.asarray(approx) - np.asarray(exact)) / denom)
