"""The malicious client: backdoor poisoning and model replacement (THEORY.md section 10, paper
section 5.3).

Each local batch has its first ``k = round(poison_fraction * |batch|)`` rows
(after the per-epoch seeded shuffle) stamped with the ground-truth trigger and
relabelled to the target ``T``, exactly as :func:`fldata.triggers.poison_batch`
does (released code: 20 of every 64). Continuous attack: poisons every round.
Single-shot: poisons in one round and submits ``W_t + scale (W_M - W_t)`` (the replacement
factor comes from :meth:`linear_fl.config.LinearFLConfig.replacement_factor`, default ``1 / p_M``).
"""

from __future__ import annotations

import numpy as np

from fldata.triggers import Trigger, dba_trigger

from .data import ClientData, stamp_flat
from .stamped import augmented_mask_pattern, stamped_mixture_gradient
from .training import BatchGradient, LocalTraining, clean_gradient, local_train


def true_trigger(
    image_shape: tuple[int, int, int], pieces: int | tuple[int, ...] | None = None, scale: int = 1
) -> Trigger:
    """The ground-truth trigger: ``fldata.triggers.dba_trigger`` (default: all 4 bars, pixels set to
    1).
    """
    return dba_trigger(image_shape, pieces=pieces, scale=scale)


def num_poisoned(batch_len: int, poison_fraction: float) -> int:
    """``k = round(poison_fraction * batch_len)`` rows poisoned per batch (20 of 64 by default)."""
    return int(round(poison_fraction * batch_len))


def poisoned_gradient(
    data: ClientData,
    trigger: Trigger,
    image_shape: tuple[int, int, int],
    target: int,
    poison_fraction: float,
) -> BatchGradient:
    """Callback: mean gradient on a batch whose first ``k`` rows are poisoned (as
    ``fldata.triggers.poison_batch``).

    ``G = (1/|B|) [sum_{clean i} r_i x~_i^T + sum_{poisoned i} (s(W x~^t_i) - e_T) (x~^t_i)^T]``,
    computed by :func:`linear_fl.stamped.stamped_mixture_gradient` in two passes over the stored
    rows (no stamped copy); the tests check it against ``poison_batch`` + ``mean_gradient``.
    """
    Xa, y = data.Xa, data.y
    m_aug, mp_aug = augmented_mask_pattern(trigger.mask, trigger.pattern)
    n = Xa.shape[0]

    def grad(W: np.ndarray, idx: np.ndarray) -> np.ndarray:
        k = num_poisoned(idx.shape[0], poison_fraction)
        full = idx.shape[0] == n
        base_X, base_y = (Xa, y) if full else (Xa[idx], y[idx])
        poisoned = np.zeros(base_X.shape[0])
        poisoned[idx[:k] if full else np.arange(k)] = 1.0
        return stamped_mixture_gradient(
            W, base_X, base_y, target, 1.0 - poisoned, poisoned, m_aug, mp_aug
        )

    return grad


def malicious_update(
    W_t: np.ndarray,
    data: ClientData,
    training: LocalTraining,
    rng: np.random.Generator,
    trigger: Trigger,
    image_shape: tuple[int, int, int],
    target: int,
    poison_fraction: float,
    poison: bool,
    scale: float = 1.0,
) -> np.ndarray:
    """The malicious client's submitted model ``W_M``.

    ``poison=False``: it trains like a benign client (clean data). ``poison=True``:
    poisoned training, then model replacement ``W_M = W_t + scale (W_M^loc - W_t)``.
    The update is oblivious: it depends only on ``W_t``, its data and ``rng``.
    """
    if not poison:
        return local_train(W_t, data.n, clean_gradient(data.Xa, data.y), training, rng)
    grad = poisoned_gradient(data, trigger, image_shape, target, poison_fraction)
    W_local = local_train(W_t, data.n, grad, training, rng, shuffle=True)
    return W_t + scale * (W_local - W_t)


def backdoor_test_set(
    Xa_test: np.ndarray,
    y_test: np.ndarray,
    trigger: Trigger,
    image_shape: tuple[int, int, int],
    target: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``S_b``: every test row with label != target, stamped with the true trigger (THEORY.md
    section 4).

    Returns ``(Xa_backdoor, test_indices)``; the attack label of every row is ``target``.
    """
    indices = np.flatnonzero(y_test != target)
    return stamp_flat(Xa_test[indices], trigger, image_shape), indices
