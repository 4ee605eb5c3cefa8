"""Logits and gradients of the linear model on stamped inputs, without forming the stamped inputs.

For the stamp ``A_{m,p}(x) = (1 - m) * x + m * p`` (fldata.triggers.stamp) on
the pixel coordinates and the bias coordinate left at 1, write ``m~`` and
``p~`` for the mask (broadcast over channels, flattened channel-first) and
pattern, extended by 0 on the bias coordinate. Because the model is linear,

    W A(x~) = (W * (1 - m~)) x~ + W (m~ * p~),
    sum_i r_i A(x~_i)^T = (sum_i r_i x~_i^T) * (1 - m~) + (sum_i r_i) (m~ * p~)^T,

so one pass over the clean data gives logits and gradients for the stamped
data (THEORY.md section 2, ``G_bar_a``). This is the memory-bound hot path of
hardening and trigger inversion. Stamping itself is still defined only in
fldata.triggers; the tests check these identities against it.
"""

from __future__ import annotations

import numpy as np

from fldata.metrics import softmax
from fldata.triggers import Trigger

from .model import row_products


def augmented_mask_pattern(mask: np.ndarray, pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(m~, m~ * p~)`` as (d+1,) vectors: mask broadcast over channels, 0 on the bias
    coordinate.
    """
    pattern = np.asarray(pattern, dtype=np.float64)
    m = np.broadcast_to(np.asarray(mask, dtype=np.float64), pattern.shape).reshape(-1)
    m_aug = np.append(m, 0.0)
    mp_aug = np.append(m * pattern.reshape(-1), 0.0)
    return m_aug, mp_aug


def stamped_weights(
    W: np.ndarray, m_aug: np.ndarray, mp_aug: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(W * (1 - m~), W (m~ * p~))``: logits of stamped rows are ``Xa @ A.T + offset``."""
    return W * (1.0 - m_aug), W @ mp_aug


def stamped_logits(W: np.ndarray, Xa: np.ndarray, trigger: Trigger) -> np.ndarray:
    """Logits ``W A_{m,p}(x~_i)`` of every row stamped with ``trigger``, shape (n, c)."""
    m_aug, mp_aug = augmented_mask_pattern(trigger.mask, trigger.pattern)
    A, offset = stamped_weights(W, m_aug, mp_aug)
    return row_products(Xa, A) + offset


def stamped_mixture_gradient(
    W: np.ndarray,
    Xa: np.ndarray,
    y_clean: np.ndarray,
    y_stamped: np.ndarray | int,
    clean_weight: np.ndarray | float,
    stamped_weight: np.ndarray | float,
    m_aug: np.ndarray,
    mp_aug: np.ndarray,
) -> np.ndarray:
    """``(1/n) sum_i [a_i (s(W x~_i) - e_{y_i}) x~_i^T + b_i (s(W x^_i) - e_{y^_i}) x^_i^T]`` in two
    passes over ``Xa``.

    ``x^_i = A_{m,p}(x~_i)``; ``a_i`` = ``clean_weight``, ``b_i`` = ``stamped_weight``
    (scalars or per-row arrays). Hardening (THEORY.md section 2): ``a = lambda_c``,
    ``b = lambda_a``, ``y^ = y``. Poisoning: ``a = 1 - poisoned``, ``b = poisoned``, ``y^ = T``.
    """
    n, c = Xa.shape[0], W.shape[0]
    A, offset = stamped_weights(W, m_aug, mp_aug)
    Z = row_products(Xa, np.vstack([W, A]))
    Z[:, c:] += offset
    rows = np.arange(n)
    R = np.empty_like(Z)
    R[:, :c] = softmax(Z[:, :c])
    R[:, c:] = softmax(Z[:, c:])
    R[rows, y_clean] -= 1.0
    R[rows, c + np.asarray(y_stamped)] -= 1.0
    R[:, :c] *= np.reshape(clean_weight, (-1, 1)) if np.ndim(clean_weight) else clean_weight
    R[:, c:] *= np.reshape(stamped_weight, (-1, 1)) if np.ndim(stamped_weight) else stamped_weight
    S = R.T @ Xa  # (2c, d+1): [sum a r x~^T ; sum b r^ x~^T]
    G_stamped = S[c:] * (1.0 - m_aug) + np.outer(R[:, c:].sum(axis=0), mp_aug)
    return (S[:c] + G_stamped) / n


def hardened_mean_gradient(
    W: np.ndarray,
    Xa: np.ndarray,
    y: np.ndarray,
    m_aug: np.ndarray,
    mp_aug: np.ndarray,
    lambda_c: float,
    lambda_a: float,
) -> np.ndarray:
    """``lambda_c G_c + lambda_a G_a`` in one pass over ``Xa`` (THEORY.md section 2).

    ``G_c = (1/n) sum_i (s(W x~_i) - e_{y_i}) x~_i^T`` on the clean rows and
    ``G_a`` the same on the stamped rows ``x^_i = A_{m,p}(x~_i)`` with the TRUE labels.
    """
    return stamped_mixture_gradient(W, Xa, y, y, lambda_c, lambda_a, m_aug, mp_aug)
