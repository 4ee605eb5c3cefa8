"""The probe protocol's hardening round with several benign clients, on the features
``\\tilde\\phi``.

THEORY.md section 2 has one benign client. A deep round has several: client ``i`` has weight
``p_i`` (``G_{t+1} = G_t + \\sum_i p_i (w_i - G_t)``, server learning rate included) and hardening
samples ``a \\in A_i`` (one local sample and one inverted trigger each). With one full-batch step of
learning rate ``\\eta`` in the paper convention ``\\lambda_c = \\lambda_a = 1`` the clean gradients
cancel and the attackers' (oblivious) updates cancel, so (paper eq. 14, summed over clients)

    ``\\Delta W = \\sum_i -p_i \\eta \\bar G_{a,i}``,  ``\\bar G_{a,i} = (1/|A_i|) \\sum_{a \\in
    A_i} (s(W_t \\hat x_a) - e_{y_a}) \\hat x_a^T``.

Each client is one :class:`theory.frozen.HardeningRound` (``p_B = p_i``, ``n_B = |A_i|``), so the
closed form and the frozen-residual models are the single implementations of :mod:`theory.frozen`.
Summing the clients' frozen models ``\\Delta W_{F,i}(\\delta) = base_i - \\eta_{a,i} \\sum_{a \\in
A_i} \\bar r_a \\delta_a^T`` gives again one frozen model over all pairs: ``base = \\sum_i base_i``,
residual rows ``(\\eta_{a,i} / \\eta_{ref}) \\bar r_a``, ``\\eta_a = \\eta_{ref}`` (THEORY.md 5,
6.5).
"""

from __future__ import annotations

import numpy as np

from theory.deep.state import DeepProbeState
from theory.frozen import FrozenResidualModel, HardeningRound, deltaW_closed_form, frozen_model

PAPER_CONVENTION = (1.0, 1.0)  # (lambda_c, lambda_a) of the probe protocol


def client_rounds(state: DeepProbeState) -> list[HardeningRound]:
    """One :class:`HardeningRound` per benign client that has hardening samples: ``W_t = W_start``,
    ``x^t_a = pool_X_true``, ``\\hat x_a = pool_X_hat``, labels ``pool_y``, ``p_B = p_i``,
    ``\\eta``. ``X_clean`` is set to ``x^t_a``: with ``\\lambda_c = 1`` the clean rows enter only
    through ``n_B = |A_i|`` (``\\Delta W_0 = 0``)."""
    lambda_c, lambda_a = PAPER_CONVENTION
    rounds = []
    for client, weight in enumerate(state.benign_weights):
        rows = np.flatnonzero(state.pool_client == client)
        if rows.size == 0:
            continue
        X_true = state.pool_X_true[rows]
        rounds.append(
            HardeningRound(
                W_start=state.W_start,
                X_clean=X_true,
                y=state.pool_y[rows],
                X_true=X_true,
                X_hat=state.pool_X_hat[rows],
                eta=state.eta,
                p_B=float(weight),
                lambda_c=lambda_c,
                lambda_a=lambda_a,
            )
        )
    return rounds


def closed_form_deltaW(rounds: list[HardeningRound], shape: tuple[int, int]) -> np.ndarray:
    """``\\Delta W = \\sum_i -p_i \\eta [(\\lambda_c - 1)\\bar G_{c,i} + \\lambda_a \\bar G_{a,i}]``
    (module docstring; zero when no client hardens)."""
    total = np.zeros(shape)
    for rnd in rounds:
        total += deltaW_closed_form(rnd)
    return total


def stacked_frozen_model(rounds: list[HardeningRound], kind: str = "F-hat") -> FrozenResidualModel:
    """The sum of the clients' frozen-residual models as one model over all hardening pairs (module
    docstring): ``base = \\sum_i base_i``, rows ``(\\eta_{a,i}/\\eta_{ref})\\bar r_a``,
    ``\\eta_{ref} = \\max_i \\eta_{a,i}``. Pairs keep the order of ``rounds``."""
    if not rounds:
        raise ValueError(
            "no benign client has hardening samples: Delta W = 0 and there is no frozen model"
        )
    models = [frozen_model(rnd, kind) for rnd in rounds]
    eta_ref = max(model.eta_a for model in models)
    residuals = np.concatenate([model.residuals * (model.eta_a / eta_ref) for model in models])
    base = np.sum([model.base for model in models], axis=0)
    return FrozenResidualModel(name=kind, base=base, residuals=residuals, eta_a=eta_ref)


def pair_order(state: DeepProbeState) -> np.ndarray:
    """Row indices of the pool in the order of :func:`stacked_frozen_model` (grouped by client)."""
    return np.concatenate(
        [np.flatnonzero(state.pool_client == client) for client in range(len(state.benign_weights))]
    ).astype(np.int64)
