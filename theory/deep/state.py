"""The numbers one deep probe produces, as float64 numpy arrays (torch-free), and their save / load.

Produced by :func:`deepfl.probe.probe_round` from a deepfl run's global model ``G_R`` and the round
``R+1`` that follows it, run twice with identical random streams (FLIP on the benign clients, and
no client defense), the attackers poisoning as in the run. Features are
``\\tilde\\phi(x) = [\\phi(x); 1]``: ``\\phi`` is the input of the network's output layer, computed
in float64; every output-layer matrix ``W`` is ``[weight | bias]``, shape ``(c, D)`` with ``D =
dim\\phi + 1``.

Three probe rounds (module :mod:`theory.deep`):

* ``sgd_*``: (a) last layer only, features frozen at ``G_R``, the engine's local SGD (momentum,
  weight decay, mini-batches, FLIP's hardening augment) in float64;
* ``protocol_*``: (a) last layer only, the linear engine's probe protocol on ``\\tilde\\phi``: every
  benign client takes ONE full-batch gradient step of learning rate ``eta`` on its clean samples,
  plus, with FLIP, on its hardening samples (paper convention ``\\lambda_c = \\lambda_a = 1``,
  THEORY.md section 2); attackers train as in ``sgd``. The hardening samples are ``pool_*``: pair
  ``a`` is one local sample ``x_j`` of a FLIP stamping direction and one of its inverted triggers;
  ``pool_X_true = \\tilde\\phi(stamp(x_j, true trigger))``, ``pool_X_hat = \\tilde\\phi(stamp(x_j,
  inverted trigger))`` (so ``pool_X_hat - pool_X_true`` is the feature-space trigger error
  ``\\delta_\\phi``);
* ``full_*``: (b) all layers train (the engine's round in float32), evaluated in float64.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

STATE_NAME = "deep_state"

# Arrays of a DeepProbeState (name: meaning); every one is saved.
ARRAY_DOCS: dict[str, str] = {
    "X_clean": "(n_c, D) phi~ at G_R of the clean test images",
    "y_clean": "(n_c,) their labels",
    "X_backdoor": "(n_b, D) phi~ at G_R of the non-target test images, true trigger stamped",
    "W_start": "(c, D) output layer of G_R",
    "sgd_W_nodef": "(c, D) output layer after the last-layer-only SGD round, no client defense",
    "sgd_W_def": "(c, D) the same with FLIP on the benign clients",
    "protocol_W_nodef": "(c, D) output layer after the probe-protocol round, no client defense",
    "protocol_W_def": "(c, D) the same with FLIP hardening",
    "pool_X_true": "(N, D) phi~ of the hardening samples stamped with the true trigger",
    "pool_X_hat": "(N, D) phi~ of the hardening samples stamped with the inverted trigger",
    "pool_y": "(N,) true labels of the hardening samples",
    "pool_client": "(N,) index of each hardening sample's benign client (into benign_weights)",
    "pool_input_error": "(N,) ||stamp(x, inverted) - stamp(x, true)||_inf in pixel units",
    "benign_weights": "(n_benign,) aggregation weights p_i of the benign clients (server lr "
    "included)",
    "full_logits_nodef_clean": "(n_c, c) logits of G^nd_{R+1} (all layers trained, no defense)",
    "full_logits_def_clean": "(n_c, c) logits of G^d_{R+1} (all layers trained, FLIP)",
    "full_logits_nodef_backdoor": "(n_b, c)",
    "full_logits_def_backdoor": "(n_b, c)",
    "full_X_clean": "(n_c, D) phi~ at G^nd_{R+1}",
    "full_X_backdoor": "(n_b, D) phi~ at G^nd_{R+1}",
    "full_W_nodef": "(c, D) output layer of G^nd_{R+1}",
    "full_W_def": "(c, D) output layer of G^d_{R+1}",
}
SCALARS: tuple[str, ...] = ("target", "eta", "sgd_logit_error")


@dataclass(frozen=True)
class DeepProbeState:
    """All arrays of :data:`ARRAY_DOCS` plus ``target``, the benign learning rate ``eta``,
    ``sgd_logit_error`` (max |network logits - W phi~| of the last-layer-only models on the
    evaluation sets: the features-frozen check) and JSON-ready ``meta`` (run, round, clients...)."""

    X_clean: np.ndarray
    y_clean: np.ndarray
    X_backdoor: np.ndarray
    W_start: np.ndarray
    sgd_W_nodef: np.ndarray
    sgd_W_def: np.ndarray
    protocol_W_nodef: np.ndarray
    protocol_W_def: np.ndarray
    pool_X_true: np.ndarray
    pool_X_hat: np.ndarray
    pool_y: np.ndarray
    pool_client: np.ndarray
    pool_input_error: np.ndarray
    benign_weights: np.ndarray
    full_logits_nodef_clean: np.ndarray
    full_logits_def_clean: np.ndarray
    full_logits_nodef_backdoor: np.ndarray
    full_logits_def_backdoor: np.ndarray
    full_X_clean: np.ndarray
    full_X_backdoor: np.ndarray
    full_W_nodef: np.ndarray
    full_W_def: np.ndarray
    target: int
    eta: float
    sgd_logit_error: float
    meta: dict[str, Any]

    def __post_init__(self) -> None:
        c, D = self.W_start.shape
        for name in ARRAY_DOCS:
            value = getattr(self, name)
            if name.endswith(("_W_nodef", "_W_def")) and value.shape != (c, D):
                raise ValueError(f"{name} must have shape {(c, D)}, got {value.shape}")
            if name.startswith(("X_", "pool_X", "full_X")) and (
                value.ndim != 2 or value.shape[1] != D
            ):
                raise ValueError(
                    f"{name} must have {D} feature columns (bias last), got shape {value.shape}"
                )
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise ValueError(f"{name} contains NaN or infinite values")
        if not np.all(self.X_clean[:, -1] == 1.0) or not np.all(self.X_backdoor[:, -1] == 1.0):
            raise ValueError("the last feature column must be the constant bias feature 1")

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every array and scalar (as 0-d arrays), for :func:`save_probe_state`."""
        arrays = {name: np.asarray(getattr(self, name)) for name in ARRAY_DOCS}
        return {**arrays, **{name: np.asarray(getattr(self, name)) for name in SCALARS}}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> DeepProbeState:
        """Inverse of :meth:`to_arrays`."""
        missing = sorted((set(ARRAY_DOCS) | set(SCALARS)) - set(arrays))
        if missing:
            raise ValueError(f"a deep probe state needs arrays {missing}")
        values: dict[str, Any] = {name: arrays[name] for name in ARRAY_DOCS}
        values.update(
            target=int(arrays["target"]),
            eta=float(arrays["eta"]),
            sgd_logit_error=float(arrays["sgd_logit_error"]),
        )
        return cls(**values, meta=dict(meta))

    def with_meta(self, **extra: Any) -> DeepProbeState:
        """A copy with ``extra`` merged into ``meta``."""
        return dataclasses.replace(self, meta={**self.meta, **extra})


def save_probe_state(directory: str | Path, state: DeepProbeState) -> Path:
    """Write ``directory/deep_state.npz`` + ``.json`` (sha256 per array, atomic;
    :mod:`linear_fl.state`).
    """
    from linear_fl.state import save_state

    return save_state(Path(directory) / STATE_NAME, state.to_arrays(), state.meta)


def load_probe_state(directory: str | Path) -> DeepProbeState:
    """Read a state written by :func:`save_probe_state` (arrays checked against their sha256)."""
    from linear_fl.state import load_state

    arrays, meta = load_state(Path(directory) / STATE_NAME)
    return DeepProbeState.from_arrays(arrays, meta)
