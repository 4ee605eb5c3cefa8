"""One-round probe: from a common model ``W_t``, one FedAvg round without and with hardening
(THEORY.md 2, 5, 10).

The malicious update ``W_M`` is computed once and used in both branches
(oblivious attacker); both benign branches start from the same benign stream
state. The simulated ``Delta W = W_def - W_nodef`` is compared with the closed form

    Delta W = -p_B eta [(lambda_c - 1) G_c + lambda_a G_a]      (exact for E = 1, full batch),

where ``G_c`` / ``G_a`` are the mean gradients at ``W_t`` on the clean benign
rows and on the same rows stamped with the recovered trigger (true labels).
For ``E > 1`` or mini-batches ``closed_form_applies`` is False (the simulated
value is then the one to use; ``deltaW_closed`` is still the formula's value).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fldata.triggers import Trigger

from .data import role_streams, stamp_flat
from .defense import benign_training, benign_update, recover_trigger
from .inversion import NeuralCleanseChoice
from .model import mean_gradient
from .server import fedavg
from .trigger_error import TriggerError, trigger_error
from .twin import Setup


@dataclass(frozen=True)
class Probe:
    """Everything one round from ``W_start`` produces (field names of the linear_fl contract)."""

    round_index: int
    W_start: np.ndarray  # W_t
    W_nodef: np.ndarray  # W = W^nd_{t+1}
    W_def: np.ndarray  # W' = W^d_{t+1}
    W_M: np.ndarray  # malicious submitted model (same in both branches)
    W_B_nodef: np.ndarray  # benign local model without hardening
    W_B_def: np.ndarray  # benign local model with hardening
    X_benign: np.ndarray  # (n_B, d+1) clean benign rows x_j (augmented)
    y_benign: np.ndarray  # (n_B,)
    X_benign_true: np.ndarray  # x^t_j: true-trigger stamped
    X_benign_hat: np.ndarray  # x^_j: recovered-trigger stamped
    recovered_trigger: Trigger
    true_trigger: Trigger
    eta: float
    p_B: float
    p_M: float
    n_B: int
    lambda_c: float
    lambda_a: float
    target: int  # configured attack target (ground truth; not used by the defense)
    poisoned: bool  # whether the malicious client poisoned in this round
    closed_form_applies: bool  # benign local training is one full-batch step (E = 1)
    G_clean: np.ndarray  # G_bar_c at W_t
    G_aug: np.ndarray  # G_bar_a at W_t
    deltaW_closed: np.ndarray
    deltaW_simulated: np.ndarray
    inversion: NeuralCleanseChoice | None
    trigger_error: TriggerError

    @property
    def delta(self) -> np.ndarray:
        """``x^_j - x^t_j``, (n_B, d+1), zero bias column (computed on access: 30000 x 785 on
        MNIST).
        """
        return self.X_benign_hat - self.X_benign_true

    @property
    def relative_error(self) -> float:
        """``||DeltaW_sim - DeltaW_closed||_F / max(||DeltaW_closed||_F, tiny)``."""
        denom = max(float(np.linalg.norm(self.deltaW_closed)), np.finfo(float).tiny)
        return float(np.linalg.norm(self.deltaW_simulated - self.deltaW_closed) / denom)


def closed_form_delta_w(
    G_clean: np.ndarray, G_aug: np.ndarray, eta: float, p_B: float, lambda_c: float, lambda_a: float
) -> np.ndarray:
    """``Delta W = -p_B eta [(lambda_c - 1) G_c + lambda_a G_a]`` (THEORY.md section 2)."""
    return -p_B * eta * ((lambda_c - 1.0) * G_clean + lambda_a * G_aug)


def one_round_probe(
    setup: Setup,
    W_start: np.ndarray,
    round_index: int,
    recovered_trigger: Trigger | None = None,
    warm: Mapping[int, tuple[np.ndarray, np.ndarray]] | None = None,
    malicious_model: np.ndarray | None = None,
) -> Probe:
    """One round from ``W_start`` (= ``W_t``, e.g. ``twin.nodef.globals[r]``) as round
    ``round_index``.

    The recovered trigger is inverted against ``W_start`` (warm-started from
    ``warm``, e.g. ``twin.defense.inversions[r-1].warm_starts()``) unless
    ``recovered_trigger`` is given. ``malicious_model`` overrides the malicious
    client's submission (any oblivious update, e.g. random or scaled).
    Random streams: spawned from ``(seed, round_index)``, identical for both branches.
    """
    cfg = setup.config
    W_start = _checked_start(setup, W_start, round_index)
    streams = role_streams(cfg.seed, round_index)
    inversion = None
    if recovered_trigger is None:
        inversion = recover_trigger(
            W_start,
            setup.benign,
            cfg,
            setup.image_shape,
            setup.num_classes,
            streams["inversion"],
            warm,
        )
        recovered_trigger = inversion.trigger
    if malicious_model is None:
        W_M = _malicious_model(setup, W_start, round_index, streams["malicious"])
    else:
        W_M = np.asarray(malicious_model, dtype=np.float64)
    W_B_nodef, W_B_def = _benign_branches(setup, W_start, streams["benign"], recovered_trigger)
    names = ("benign client", "malicious client")
    W_nodef = fedavg(W_start, [W_B_nodef, W_M], setup.weights, names)
    W_def = fedavg(W_start, [W_B_def, W_M], setup.weights, names)
    models = _RoundModels(W_M, W_B_nodef, W_B_def, W_nodef, W_def)
    return _probe_record(setup, W_start, round_index, models, recovered_trigger, inversion)


class _RoundModels(NamedTuple):
    """The submitted and aggregated models of one probe round, without and with hardening."""

    W_M: np.ndarray
    W_B_nodef: np.ndarray
    W_B_def: np.ndarray
    W_nodef: np.ndarray
    W_def: np.ndarray


def _checked_start(setup: Setup, W_start: np.ndarray, round_index: int) -> np.ndarray:
    """``W_start`` as float64, after checking its shape and that ``round_index`` is an int >= 1."""
    W_start = np.asarray(W_start, dtype=np.float64)
    expected = (setup.num_classes, setup.benign.Xa.shape[1])
    if W_start.shape != expected:
        raise ValueError(f"W_start must have shape {expected} (classes, d+1), got {W_start.shape}")
    if not isinstance(round_index, int) or round_index < 1:
        raise ValueError(
            f"round_index must be an int >= 1 (rounds after pre-training), got {round_index!r}"
        )
    return W_start


def _malicious_model(
    setup: Setup, W_start: np.ndarray, round_index: int, rng: np.random.Generator
) -> np.ndarray:
    """The malicious client's submitted model ``W_M`` for round ``round_index``."""
    return setup.malicious_model(W_start, round_index, rng)


def _benign_branches(
    setup: Setup, W_start: np.ndarray, rng: np.random.Generator, recovered_trigger: Trigger
) -> tuple[np.ndarray, np.ndarray]:
    """The benign local model without and with hardening, both from the same ``rng`` state."""
    benign_state = rng.bit_generator.state
    W_B_nodef = benign_update(W_start, setup.benign, setup.config, rng)
    rng.bit_generator.state = benign_state
    W_B_def = benign_update(W_start, setup.benign, setup.config, rng, recovered_trigger)
    return W_B_nodef, W_B_def


def _probe_record(
    setup: Setup,
    W_start: np.ndarray,
    round_index: int,
    models: _RoundModels,
    recovered_trigger: Trigger,
    inversion: NeuralCleanseChoice | None,
) -> Probe:
    """The :class:`Probe` of one round: stamped rows, gradients, ``Delta W`` and trigger error."""
    cfg = setup.config
    X, y = setup.benign.Xa, setup.benign.y
    X_true = stamp_flat(X, setup.true_trigger, setup.image_shape)
    X_hat = stamp_flat(X, recovered_trigger, setup.image_shape)
    G_clean, G_aug = mean_gradient(W_start, X, y), mean_gradient(W_start, X_hat, y)
    lambda_c, lambda_a = cfg.lambdas
    training = benign_training(cfg)
    selected = inversion.selected_target if inversion is not None else -1
    return Probe(
        round_index=round_index,
        W_start=W_start,
        W_nodef=models.W_nodef,
        W_def=models.W_def,
        W_M=models.W_M,
        W_B_nodef=models.W_B_nodef,
        W_B_def=models.W_B_def,
        X_benign=X,
        y_benign=y,
        X_benign_true=X_true,
        X_benign_hat=X_hat,
        recovered_trigger=recovered_trigger,
        true_trigger=setup.true_trigger,
        eta=training.lr,
        p_B=setup.p_B,
        p_M=setup.p_M,
        n_B=setup.benign.n,
        lambda_c=lambda_c,
        lambda_a=lambda_a,
        target=cfg.target,
        poisoned=setup.poisons_in(round_index),
        closed_form_applies=training.is_single_full_batch_step,
        G_clean=G_clean,
        G_aug=G_aug,
        deltaW_closed=closed_form_delta_w(
            G_clean, G_aug, training.lr, setup.p_B, lambda_c, lambda_a
        ),
        deltaW_simulated=models.W_def - models.W_nodef,
        inversion=inversion,
        trigger_error=trigger_error(
            recovered_trigger,
            setup.true_trigger,
            setup.benign_pixel_min,
            setup.benign_pixel_max,
            selected,
        ),
    )
