"""Local client training: (mini-)batch gradient descent on the mean cross-entropy (THEORY.md section
2).

A local step is ``W <- W - eta * G(W, batch)``. ``G`` is supplied as a
callback of the batch's row indices, so one loop serves the benign client
(clean gradient ``G_c``), the hardened benign client
(``lambda_c G_c + lambda_a G_a`` on clean and recovered-trigger-stamped rows
with their TRUE labels) and the malicious client (poisoned batches).

Batching: ``batch_size=None`` is full batch. Rows are shuffled per epoch with
the client's Generator only when the order matters (mini-batches, or
``shuffle=True`` for a poisoned full batch whose first ``k`` rows are
poisoned); a clean full-batch step draws nothing, so it is a pure function of
``W`` (exactly one step ``W - eta G_c`` for ``E=1``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fldata.triggers import Trigger

from .model import mean_gradient
from .stamped import augmented_mask_pattern, hardened_mean_gradient

BatchGradient = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(W, row_indices) -> mean gradient (c, d+1)`` on that batch."""


@dataclass(frozen=True)
class LocalTraining:
    """Local optimiser settings of one client: learning rate ``eta``, epochs ``E``, batch size (None
    = full).
    """

    lr: float
    epochs: int
    batch_size: int | None

    @property
    def is_single_full_batch_step(self) -> bool:
        """True iff local training is exactly one full-batch step (the closed form of Delta W
        applies).
        """
        return self.epochs == 1 and self.batch_size is None


def batches(n: int, batch_size: int | None, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Row-index batches of one epoch: a permutation from ``rng`` (or identity if None), cut into
    chunks.
    """
    order = rng.permutation(n) if rng is not None else np.arange(n)
    size = n if batch_size is None else batch_size
    return [order[i : i + size] for i in range(0, n, size)]


def local_train(
    W_start: np.ndarray,
    n: int,
    gradient: BatchGradient,
    training: LocalTraining,
    rng: np.random.Generator,
    shuffle: bool = False,
) -> np.ndarray:
    """Run ``training.epochs`` epochs of ``W <- W - lr * gradient(W, batch)``; returns a new array.

    The rows are shuffled with ``rng`` every epoch if ``training.batch_size`` is
    set or ``shuffle`` is True; otherwise no random number is drawn.
    """
    W = W_start.copy()
    use_rng = rng if (shuffle or training.batch_size is not None) else None
    for _ in range(training.epochs):
        for idx in batches(n, training.batch_size, use_rng):
            W -= training.lr * gradient(W, idx)
    if not np.all(np.isfinite(W)):
        raise FloatingPointError(
            "local training produced NaN/inf weights; lower the learning rate (lr / malicious_lr "
            "/ pretrain_lr)"
        )
    return W


def clean_gradient(Xa: np.ndarray, y: np.ndarray) -> BatchGradient:
    """Callback for ``G_c``: mean cross-entropy gradient on the clean rows of the batch."""
    n = Xa.shape[0]

    def grad(W: np.ndarray, idx: np.ndarray) -> np.ndarray:
        if idx.shape[0] == n and np.array_equal(idx, np.arange(n)):
            return mean_gradient(W, Xa, y)
        return mean_gradient(W, Xa[idx], y[idx])

    return grad


def hardened_gradient(
    Xa: np.ndarray, y: np.ndarray, trigger: Trigger, lambda_c: float, lambda_a: float
) -> BatchGradient:
    """Callback for FLIP hardening: ``lambda_c G_c + lambda_a G_a`` (THEORY.md section 2).

    ``G_a`` is the mean gradient on the same rows stamped with the recovered
    ``trigger`` and keeping their true labels ``y``; computed in one pass over
    the clean rows by :func:`linear_fl.stamped.hardened_mean_gradient`.
    """
    m_aug, mp_aug = augmented_mask_pattern(trigger.mask, trigger.pattern)
    n = Xa.shape[0]

    def grad(W: np.ndarray, idx: np.ndarray) -> np.ndarray:
        if idx.shape[0] == n and np.array_equal(idx, np.arange(n)):
            return hardened_mean_gradient(W, Xa, y, m_aug, mp_aug, lambda_c, lambda_a)
        return hardened_mean_gradient(W, Xa[idx], y[idx], m_aug, mp_aug, lambda_c, lambda_a)

    return grad
