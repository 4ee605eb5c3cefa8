"""Symbolic (sympy) derivations and exact-arithmetic checks used to cross-check the float64 code.

* :func:`loss_change_identity_holds` derives ``\\Delta\\ell = \\ell(z+u) - \\ell(z)`` for
  ``\\ell(z) = LSE(z) - z_y`` and proves it equals ``-u_y + \\log\\sum_k s_k e^{u_k}`` (Thm 1, A.14
  eqs. 16-20; THEORY.md section 3).
* :func:`logistic_gradient_holds` differentiates the cross-entropy of ``z = Wx`` and proves
  ``\\partial\\ell/\\partial W = (s - e_y) x^T`` (THEORY.md section 1), and that its column sums
  vanish (``1^T \\Delta W = 0``, section 2).
* :func:`frozen_affine_law_holds` proves ``\\Delta W_F(\\delta)x = u(0) -
  \\eta_a(\\delta^Tx)\\rho``.
* :func:`exact_theorem1` evaluates every Theorem-1 quantity on a rational instance: with
  ``a_k = e^{z_k}`` and ``b_k = e^{u_k}`` positive rationals, (T1) is the exact rational mediant
  inequality ``\\min_k b_k \\le \\sum_k a_k b_k / \\sum_k a_k \\le \\max_k b_k``; R1 and R2 are
  checked with 60-digit evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

DIGITS = 60


def loss_change_identity_holds(num_classes: int = 3, label: int = 0) -> bool:
    """Symbolic proof that ``\\ell(z+u) - \\ell(z) = -u_y + \\log\\sum_k s_k(z) e^{u_k}``."""
    z = sp.symbols(f"z0:{num_classes}", real=True)
    u = sp.symbols(f"u0:{num_classes}", real=True)

    def loss(v: Sequence[sp.Expr]) -> sp.Expr:
        return sp.log(sum(sp.exp(vk) for vk in v)) - v[label]

    difference = loss([zk + uk for zk, uk in zip(z, u, strict=True)]) - loss(z)
    partition = sum(sp.exp(zk) for zk in z)
    identity = -u[label] + sp.log(
        sum(sp.exp(zk) / partition * sp.exp(uk) for zk, uk in zip(z, u, strict=True))
    )
    # Both sides are real logs of positive quantities: compare their exponentials.
    return sp.simplify(sp.expand(sp.exp(difference) - sp.exp(identity))) == 0


def logistic_gradient_holds(num_classes: int = 3, dim: int = 2, label: int = 1) -> bool:
    """Symbolic proof that ``\\nabla_W \\ell(W; x, y) = (s(Wx) - e_y)x^T`` and ``1^T\\nabla_W\\ell =
    0``.
    """
    W = sp.Matrix(num_classes, dim, lambda k, l: sp.Symbol(f"w{k}_{l}", real=True))
    x = sp.Matrix(dim, 1, lambda l, _: sp.Symbol(f"x{l}", real=True))
    z = W * x
    partition = sum(sp.exp(z[k]) for k in range(num_classes))
    loss = sp.log(partition) - z[label]
    for k in range(num_classes):
        s_k = sp.exp(z[k]) / partition
        for l in range(dim):
            expected = (s_k - (1 if k == label else 0)) * x[l]
            if sp.simplify(sp.diff(loss, W[k, l]) - expected) != 0:
                return False
    column_sums = [sum(sp.diff(loss, W[k, l]) for k in range(num_classes)) for l in range(dim)]
    return all(sp.simplify(total) == 0 for total in column_sums)


def frozen_affine_law_holds(num_classes: int = 3, dim: int = 2, num_benign: int = 2) -> bool:
    """Symbolic proof of ``\\Delta W_F(\\delta) x = \\Delta W_F(0)x - \\eta_a(\\delta^T x)\\rho``
    with ``\\rho = \\sum_j \\bar r_j`` (THEORY.md section 5), for a shared ``\\delta``."""
    eta_a = sp.Symbol("eta_a", positive=True)
    # sp.Matrix calls each entry function at once, so the late-bound j is the current one.
    r = [
        sp.Matrix(num_classes, 1, lambda k, _: sp.Symbol(f"r{j}_{k}", real=True))  # noqa: B023
        for j in range(num_benign)
    ]
    xt = [
        sp.Matrix(dim, 1, lambda l, _: sp.Symbol(f"t{j}_{l}", real=True))  # noqa: B023
        for j in range(num_benign)
    ]
    delta = sp.Matrix(dim, 1, lambda l, _: sp.Symbol(f"d{l}", real=True))
    x = sp.Matrix(dim, 1, lambda l, _: sp.Symbol(f"x{l}", real=True))

    def delta_W(d: sp.Matrix) -> sp.Matrix:
        return -eta_a * sum(
            (r[j] * (xt[j] + d).T for j in range(num_benign)), sp.zeros(num_classes, dim)
        )

    rho = sum(r, sp.zeros(num_classes, 1))
    lhs = delta_W(delta) * x
    rhs = delta_W(sp.zeros(dim, 1)) * x - eta_a * (delta.T * x)[0, 0] * rho
    return all(sp.expand(e) == 0 for e in lhs - rhs)


@dataclass(frozen=True)
class ExactTheorem1:
    """Theorem-1 quantities of one rational instance, as 60-digit sympy Floats, plus the exact
    rational verdict of the mediant inequality."""

    lb: sp.Float
    lb_jensen: sp.Float
    actual: sp.Float
    ub: sp.Float
    ub_r2: sp.Float
    mediant_holds: bool

    def ordering_holds(self) -> bool:
        """``lb <= lb^J <= actual <= min(ub, R2)`` at 60 digits (ties allowed)."""
        tol = sp.Float(10) ** (-(DIGITS - 10))
        return bool(
            self.lb <= self.lb_jensen + tol
            and self.lb_jensen <= self.actual + tol
            and self.actual <= min(self.ub, self.ub_r2) + tol
        )


def exact_theorem1(
    exp_logits: Sequence[Fraction], exp_logit_change: Sequence[Fraction], label: int
) -> ExactTheorem1:
    """Theorem 1 on ``a_k = e^{z_k}``, ``b_k = e^{u_k}`` (positive rationals) and label ``y``.

    ``e^{\\Delta\\ell} = (\\sum_k a_k b_k / \\sum_k a_k)/b_y``, ``e^{lb} = \\min b / b_y``,
    ``e^{ub} = \\max b / b_y``, ``lb^J = \\sum_k s_k\\log b_k - \\log b_y``, R2 = ``lb^J +
    (\\log\\max b
    - \\log\\min b)^2/8``.
    """
    a = [sp.Rational(Fraction(v)) for v in exp_logits]
    b = [sp.Rational(Fraction(v)) for v in exp_logit_change]
    if len(a) != len(b) or len(a) < 2 or not all(v > 0 for v in a + b):
        raise ValueError(
            "exp_logits and exp_logit_change must be "
            "equal-length (>= 2) sequences of positive numbers"
        )
    if not 0 <= label < len(a):
        raise ValueError(f"label must lie in 0..{len(a) - 1}, got {label}")
    total = sum(a)
    mediant = sum(ak * bk for ak, bk in zip(a, b, strict=True)) / total  # exact rational
    s = [ak / total for ak in a]
    log_b = [sp.log(bk) for bk in b]
    lb_jensen = sum(sk * lk for sk, lk in zip(s, log_b, strict=True)) - log_b[label]
    spread = sp.log(max(b)) - sp.log(min(b))
    values = {
        "lb": sp.log(min(b) / b[label]),
        "lb_jensen": lb_jensen,
        "actual": sp.log(mediant / b[label]),
        "ub": sp.log(max(b) / b[label]),
        "ub_r2": lb_jensen + spread**2 / 8,
    }
    return ExactTheorem1(
        **{k: sp.N(v, DIGITS) for k, v in values.items()},
        mediant_holds=bool(min(b) <= mediant <= max(b)),
    )


def exact_gradient(
    W: Sequence[Sequence[Fraction]], x: Sequence[Fraction], label: int
) -> list[list[sp.Float]]:
    """``\\partial\\ell/\\partial W`` of ``\\ell = LSE(Wx) - (Wx)_y`` by symbolic differentiation,
    evaluated at the rational point ``(W, x)`` to 60 digits; cross-checks
    :func:`theory.frozen.mean_gradient`."""
    rows, cols = len(W), len(x)
    Ws = sp.Matrix(rows, cols, lambda k, l: sp.Symbol(f"w{k}_{l}", real=True))
    xs = [sp.Rational(Fraction(v)) for v in x]
    z = [sum(Ws[k, l] * xs[l] for l in range(cols)) for k in range(rows)]
    loss = sp.log(sum(sp.exp(zk) for zk in z)) - z[label]
    point = {Ws[k, l]: sp.Rational(Fraction(W[k][l])) for k in range(rows) for l in range(cols)}
    return [
        [sp.N(sp.diff(loss, Ws[k, l]).subs(point), DIGITS) for l in range(cols)]
        for k in range(rows)
    ]
