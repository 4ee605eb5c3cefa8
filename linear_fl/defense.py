"""The benign client's FLIP round: trigger inversion + model hardening (paper section 3; THEORY.md
sections 2, 10).

1. Invert a trigger against the received global model ``W_t`` on a seeded
   subsample of the local data (:func:`linear_fl.inversion.invert_trigger`;
   candidate targets = every class unless configured; the attack target is
   never used).
2. Stamp ALL local samples with the recovered trigger, keeping their TRUE
   labels (``x^_j``), and train on clean + augmented data with the gradient
   ``lambda_c G_c + lambda_a G_a``.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor

import numpy as np

from fldata.triggers import Trigger

from .config import LinearFLConfig
from .data import ClientData
from .inversion import NeuralCleanseChoice, invert_trigger
from .training import LocalTraining, clean_gradient, hardened_gradient, local_train


def benign_training(cfg: LinearFLConfig) -> LocalTraining:
    return LocalTraining(cfg.lr, cfg.local_epochs, cfg.batch_size)


def recover_trigger(
    W_t: np.ndarray,
    data: ClientData,
    cfg: LinearFLConfig,
    image_shape: tuple[int, int, int],
    num_classes: int,
    rng: np.random.Generator,
    warm: Mapping[int, tuple[np.ndarray, np.ndarray]] | None = None,
    helper: Executor | None = None,
) -> NeuralCleanseChoice:
    """Step 1: inversion on ``min(inversion_subsample, n)`` rows drawn without replacement from
    ``rng`` (``helper``: see :func:`linear_fl.inversion.invert_trigger`)."""
    size = min(cfg.inversion_subsample, data.n)
    rows = np.sort(rng.choice(data.n, size=size, replace=False))
    candidates = (
        cfg.inversion_targets if cfg.inversion_targets is not None else tuple(range(num_classes))
    )
    bad = [t for t in candidates if not 0 <= t < num_classes]
    if bad:
        raise ValueError(
            f"inversion_targets {bad} are not classes of this data set (0..{num_classes - 1})"
        )
    return invert_trigger(
        W_t,
        data.Xa[rows],
        data.y[rows],
        image_shape,
        candidates,
        cfg.inversion_lambda_l1,
        cfg.inversion_maxiter,
        cfg.inversion_success_threshold,
        cfg.inversion_source,
        warm if cfg.inversion_warm_start else None,
        helper,
    )


def benign_update(
    W_t: np.ndarray,
    data: ClientData,
    cfg: LinearFLConfig,
    rng: np.random.Generator,
    recovered: Trigger | None = None,
) -> np.ndarray:
    """Benign local model: clean training (``recovered=None``) or FLIP hardening (step 2) with
    ``recovered``.
    """
    training = benign_training(cfg)
    if recovered is None:
        return local_train(W_t, data.n, clean_gradient(data.Xa, data.y), training, rng)
    lambda_c, lambda_a = cfg.lambdas
    return local_train(
        W_t,
        data.n,
        hardened_gradient(data.Xa, data.y, recovered, lambda_c, lambda_a),
        training,
        rng,
    )
