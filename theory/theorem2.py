"""Theorem 2 of FLIP (robustness to the trigger-inversion error): the paper-literal radius and the
corrected, exactly computable certificates T2-A, T2-B, T2-C. Spec: THEORY.md section 6.

All certificates live in a frozen-residual model (:mod:`theory.frozen`) and bound the error
``\\delta`` in the ball ``\\|\\delta\\|_\\infty <= \\varepsilon`` (shared ``\\delta``), or each
``\\|\\delta_j\\|_\\infty <= \\varepsilon`` independently (``per_sample=True``, section 6.5).
``support`` (section 6.6) restricts the coordinates ``\\delta`` may touch (e.g. drop the bias).
Norms ``\\|x\\|_1`` are taken over the support. Backdoor inputs ``x^b_i`` are all scored with the
target ``T``; ``u_i(\\delta) = \\Delta W_F(\\delta) x^b_i``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

from theory.frozen import FrozenResidualModel
from theory.theorem1 import lower_bound
from theory.validation import check_class, check_labels, check_matrix, check_radius, check_support


@dataclass(frozen=True)
class PaperRadius:
    """Paper-literal Thm 2 (A.15 eqs. 29-41, reconstructed): ``\\varepsilon_P = f(0)/\\|\\nabla
    f\\|_1``.

    ``f(\\delta) = (1/m)\\sum_i (1_i - e_T)^T \\Delta W_F(\\delta) x^b_i`` with ``1_i`` the one-hot
    at ``\\arg\\min_k u_{ik}(0)`` frozen; ``\\nabla f =
    -(\\eta_a/m)\\sum_i[(1_i-e_T)^T\\rho]x^b_i``. Since ``f(0) = LB_b(0) <= 0`` (F1), the radius is
    ``"vacuous"`` (``\\le 0``) or ``"undefined"`` (0/0); ``"positive"`` would contradict F1 and is
    reported, not hidden (THEORY.md 6.2).
    """

    f0: float
    grad_l1: float
    eps: float | None
    status: str


def paper_radius(
    model: FrozenResidualModel,
    X_backdoor: np.ndarray,
    target: int,
    support: np.ndarray | None = None,
) -> PaperRadius:
    """The paper's ``\\varepsilon_P`` and its status (THEORY.md section 6.1-6.2)."""
    X, target, support = _check_inputs(model, X_backdoor, target, support)
    u0 = model.logit_change(X)
    frozen_index = u0.argmin(axis=1)
    f0 = float(np.mean(u0[np.arange(len(X)), frozen_index] - u0[:, target]))
    coeff = model.rho[frozen_index] - model.rho[target]  # (1_i - e_T)^T rho
    grad = -model.eta_a / len(X) * (X.T @ coeff)
    grad_l1 = float(np.abs(grad[support]).sum())
    if grad_l1 == 0.0:
        return PaperRadius(
            f0=f0, grad_l1=0.0, eps=None, status="undefined" if f0 == 0.0 else "vacuous"
        )
    eps = f0 / grad_l1
    return PaperRadius(f0=f0, grad_l1=grad_l1, eps=eps, status="positive" if eps > 0 else "vacuous")


def frozen_argmin_objective(
    model: FrozenResidualModel, X_backdoor: np.ndarray, target: int, delta: np.ndarray
) -> float:
    """The paper's ``f(\\delta)`` with the argmin index frozen at ``\\delta = 0``; it satisfies
    ``f(\\delta) >= LB_b(\\delta)`` (a fixed index is at least the minimum), so it is not a valid
    lower bound for ``\\delta \\ne 0`` (THEORY.md 6.2 item 2)."""
    X, target, _ = _check_inputs(model, X_backdoor, target, None)
    frozen_index = model.logit_change(X).argmin(axis=1)
    u = model.logit_change(X, delta)
    return float(np.mean(u[np.arange(len(X)), frozen_index] - u[:, target]))


def backdoor_lower_bound(
    model: FrozenResidualModel, X_backdoor: np.ndarray, target: int, delta: np.ndarray | None = None
) -> np.ndarray:
    """Per-sample Thm-1 ``lb_{b,i}(\\delta) = \\min_k u_{ik}(\\delta) - u_{iT}(\\delta)`` in the
    frozen model.
    """
    X, target, _ = _check_inputs(model, X_backdoor, target, None)
    return lower_bound(model.logit_change(X, delta), np.full(len(X), target))


@dataclass(frozen=True)
class SignCertificate:
    """T2-A: for all ``\\delta`` in the ball, every ``lb_{b,i}(\\delta) = 0`` iff ``\\varepsilon
    \\le`` ``eps`` (exact radius), where, with margins ``M_{ik} = u_{ik}(0) - u_{iT}(0) \\ge 0``
    (premise), ``eps = \\min_{i,k\\ne T} M_{ik} / (\\eta_a \\|x^b_i\\|_1 S_{kT})`` and ``S`` the
    spread (``|\\rho_k - \\rho_T|``, or ``\\sum_j|\\bar r_{jk}-\\bar r_{jT}|`` per sample). ``eps``
    is ``None`` when the premise fails and ``inf`` when nothing can break it."""

    eps: float | None
    premise: bool
    min_margin: float
    worst_sample: int
    worst_class: int
    per_sample: bool

    def worst_delta(
        self,
        model: FrozenResidualModel,
        X_backdoor: np.ndarray,
        target: int,
        eps: float,
        support: np.ndarray | None = None,
    ) -> np.ndarray:
        """Worst-case vertex for the binding pair ``(i,k)``: shared ``\\varepsilon\\,
        sign(\\rho_k-\\rho_T) sign(x^b_i)``, per sample ``\\varepsilon\\,sign(\\bar r_{jk}-\\bar
        r_{jT}) sign(x^b_i)``, zero off the support."""
        X, target, support = _check_inputs(model, X_backdoor, target, support)
        direction = np.sign(X[self.worst_sample]) * support * check_radius(eps)
        if self.per_sample:
            r = model.residuals
            return np.sign(r[:, self.worst_class] - r[:, target])[:, None] * direction[None, :]
        return np.sign(model.rho[self.worst_class] - model.rho[target]) * direction


def sign_certificate(
    model: FrozenResidualModel,
    X_backdoor: np.ndarray,
    target: int,
    support: np.ndarray | None = None,
    per_sample: bool = False,
) -> SignCertificate:
    """Corrected Thm 2, part A (THEORY.md section 6.3 T2-A; per-sample form 6.5)."""
    X, target, support = _check_inputs(model, X_backdoor, target, support)
    u0 = model.logit_change(X)
    margins = u0 - u0[:, [target]]
    margins[:, target] = np.inf
    premise = bool(np.all(margins >= 0.0))
    norms = np.abs(X[:, support]).sum(axis=1)
    sensitivity = model.eta_a * norms[:, None] * model.spread(per_sample)[:, target][None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(sensitivity > 0, margins / sensitivity, np.inf)
    ratio[:, target] = np.inf
    i, k = np.unravel_index(int(np.argmin(ratio)), ratio.shape)
    eps = float(ratio[i, k]) if premise else None
    finite_margins = margins[:, np.arange(margins.shape[1]) != target]
    return SignCertificate(
        eps=eps,
        premise=premise,
        min_margin=float(finite_margins.min()),
        worst_sample=int(i),
        worst_class=int(k),
        per_sample=per_sample,
    )


@dataclass(frozen=True)
class JensenCertificate:
    """T2-B: ``\\Delta L_b(\\delta) \\ge LB^J_b(\\delta) = LB^J_b(0) + h^T\\delta \\ge LB^J_b(0) -
    \\varepsilon\\|h\\|_1``, with ``a_i = s(W x^b_i) - e_T`` and
    ``h = -(\\eta_a/m)\\sum_i (a_i^T\\rho) x^b_i``; per sample ``h_j =
    -(\\eta_a/m)\\sum_i(a_i^T\\bar r_j)x^b_i`` and ``\\|h\\|_1 \\to \\sum_j\\|h_j\\|_1``. Radius
    ``eps = LB^J_b(0)/\\|h\\|_1`` when ``LB^J_b(0) > 0`` (else ``None``). ``h`` is (D,) shared or
    (n_B, D) per sample, zero off the support."""

    lbj0: float
    h: np.ndarray
    h_l1: float
    eps: float | None
    per_sample: bool

    def lower_bound_at(self, delta: np.ndarray) -> float:
        """``LB^J_b(\\delta) = LB^J_b(0) + <h, \\delta>`` (exact within the frozen model, for delta
        on the support).
        """
        return self.lbj0 + float(np.sum(self.h * np.asarray(delta)))


def jensen_certificate(
    model: FrozenResidualModel,
    W: np.ndarray,
    X_backdoor: np.ndarray,
    target: int,
    support: np.ndarray | None = None,
    per_sample: bool = False,
) -> JensenCertificate:
    """Corrected Thm 2, part B (THEORY.md section 6.3 T2-B): ``W`` is the no-defense model used for
    the softmax ``s(W x^b_i)``."""
    X, target, support = _check_inputs(model, X_backdoor, target, support)
    a = softmax(X @ W.T, axis=1)
    a[:, target] -= 1.0
    lbj0 = float(np.mean(np.einsum("ik,ik->i", a, model.logit_change(X))))
    scale = -model.eta_a / len(X)
    if per_sample:
        h = (scale * model.residuals) @ (a.T @ X)  # rows h_j, (n_B, D)
    else:
        h = scale * (X.T @ (a @ model.rho))
    h *= support
    h_l1 = float(np.abs(h).sum())
    eps = None if lbj0 <= 0 else (lbj0 / h_l1 if h_l1 > 0 else float("inf"))
    return JensenCertificate(lbj0=lbj0, h=h, h_l1=h_l1, eps=eps, per_sample=per_sample)


@dataclass(frozen=True)
class CleanBound:
    """T2-C: ``C(\\varepsilon) = (1/n)\\sum_i\\max_k[D_{ik} + \\varepsilon\\,\\eta_a\\|x_i\\|_1 S_{k
    y_i}] \\ge \\sup_{ball} UB_c(\\delta) \\ge \\sup_{ball}\\Delta L_c(\\delta)`` with ``D_{ik} =
    u_{ik}(0) - u_{iy_i}(0)``; simple form ``C(\\varepsilon) \\le UB_c(0) +
    \\varepsilon\\eta_a\\kappa``, ``\\kappa = (1/n)\\sum_i\\|x_i\\|_1\\max_k S_{k y_i}`` (THEORY.md
    section 6.3)."""

    margins: np.ndarray  # D_ik, (n, c)
    sensitivity: np.ndarray  # eta_a ||x_i||_1 S_{k y_i}, (n, c)
    eta_a: float
    kappa: float

    @property
    def ub0(self) -> float:
        """``UB_c(0)``, the Thm-1 clean upper bound at ``\\delta = 0``."""
        return float(self.margins.max(axis=1).mean())

    def bound(self, eps: float) -> float:
        """``C(\\varepsilon)``."""
        return float((self.margins + check_radius(eps) * self.sensitivity).max(axis=1).mean())

    def simple_bound(self, eps: float) -> float:
        """``UB_c(0) + \\varepsilon\\eta_a\\kappa``."""
        return self.ub0 + check_radius(eps) * self.eta_a * self.kappa

    def radius_for(self, budget: float) -> float | None:
        """Sufficient radius for ``UB_c \\le`` budget: ``(C - UB_c(0))/(\\eta_a\\kappa)``; ``None``
        if ``C < UB_c(0)`` (no radius works), ``inf`` if ``\\kappa = 0``."""
        slack = float(budget) - self.ub0
        if slack < 0:
            return None
        return slack / (self.eta_a * self.kappa) if self.kappa > 0 else float("inf")


def clean_bound(
    model: FrozenResidualModel,
    X_clean: np.ndarray,
    labels: np.ndarray,
    support: np.ndarray | None = None,
    per_sample: bool = False,
) -> CleanBound:
    """Corrected Thm 2, part C (THEORY.md section 6.3 T2-C; per-sample form 6.5)."""
    X = check_matrix("X_clean", X_clean)
    support = check_support(support, model.base.shape[1])
    labels = check_labels(labels, X.shape[0], model.base.shape[0])
    u0 = model.logit_change(X)
    rows = np.arange(len(X))
    margins = u0 - u0[rows, labels][:, None]
    norms = np.abs(X[:, support]).sum(axis=1)
    spread_to_label = model.spread(per_sample)[:, labels].T  # S_{k y_i}, (n, c)
    sensitivity = model.eta_a * norms[:, None] * spread_to_label
    kappa = float(np.mean(norms * spread_to_label.max(axis=1)))
    return CleanBound(margins=margins, sensitivity=sensitivity, eta_a=model.eta_a, kappa=kappa)


def _check_inputs(
    model: FrozenResidualModel, X: np.ndarray, target: int, support: np.ndarray | None
) -> tuple[np.ndarray, int, np.ndarray]:
    X = check_matrix("X_backdoor", X)
    if X.shape[1] != model.base.shape[1]:
        raise ValueError(
            f"X_backdoor has {X.shape[1]} columns, the model has {model.base.shape[1]}"
        )
    if X.shape[0] == 0:
        raise ValueError("X_backdoor is empty; need at least one backdoor sample")
    return X, check_class("target", target, model.base.shape[0]), check_support(support, X.shape[1])
