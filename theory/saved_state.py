"""The state written by ``python -m theory.verify --save-state DIR`` and an independent
recomputation of the printed numbers from it (THEORY.md section 10: "anyone can recompute every
number").

``DIR/state.npz`` + ``DIR/state.json`` (``linear_fl.state`` format: sha256 per array, atomic write):

* models, ``(classes, d+1)`` with the bias LAST: ``W_nodef``, ``W_def`` (twin after R rounds),
  ``W_start`` (= ``W^{nd}_R``), ``W_probe_nodef``, ``W_probe_def``, ``W_probe_malicious`` (probe);
* inputs, flattened pixels in [0,1] WITHOUT the bias column (append a 1 to use them with the
  models): ``X_clean``, ``y_clean`` (clean test set), ``X_backdoor`` (test images whose label is not
  the target, true trigger stamped; all labelled ``target``) and ``backdoor_indices`` (their test
  indices); the benign client's ``y_benign`` and pixels ``X_benign_bytes`` (uint8, exactly
  ``X_benign = X_benign_bytes / 255``; stored as float64 ``X_benign`` if that is not exact);
  ``X_benign_true`` / ``X_benign_hat`` are rebuilt with :func:`fldata.triggers.stamp` from
* triggers: ``true_trigger_mask`` (H,W), ``true_trigger_pattern`` (C,H,W),
  ``recovered_trigger_mask``, ``recovered_trigger_pattern``;
* scalars: ``target``, ``eta``, ``p_B``, ``n_B``, ``lambdas`` = (lambda_c, lambda_a).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fldata.triggers import stamp
from theory.analysis import (
    EvaluationSets,
    ProbeInputs,
    theorem1_pair,
    theorem2_round,
    threshold_metrics,
)
from theory.frozen import HardeningRound

if TYPE_CHECKING:
    from linear_fl.probe import Probe
    from linear_fl.twin import Setup

STATE_NAME = "state"


def _strip_bias(X: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(X, dtype=np.float64)[:, :-1])


def _with_bias(X: np.ndarray) -> np.ndarray:
    return np.concatenate([X, np.ones((X.shape[0], 1))], axis=1)


def _exact_bytes(X: np.ndarray) -> np.ndarray | None:
    """uint8 codes ``b`` with ``b / 255 == X`` bit for bit, or ``None`` if no such codes exist."""
    codes = np.rint(X * 255.0)
    if codes.min() < 0 or codes.max() > 255:
        return None
    codes = codes.astype(np.uint8)
    return codes if np.array_equal(codes.astype(np.float64) / 255.0, X) else None


def save_verification_state(
    directory: str | Path,
    setup: Setup,
    W_nodef: np.ndarray,
    W_def: np.ndarray,
    probe: Probe,
    meta: dict[str, Any],
) -> Path:
    """Write ``directory/state.npz`` and its sidecar (layout in the module docstring); returns the
    npz path.
    """
    from linear_fl.state import save_state

    X_benign = _strip_bias(probe.X_benign)
    codes = _exact_bytes(X_benign)
    benign = {"X_benign_bytes": codes} if codes is not None else {"X_benign": X_benign}
    arrays = {
        "W_nodef": W_nodef,
        "W_def": W_def,
        "W_start": probe.W_start,
        "W_probe_nodef": probe.W_nodef,
        "W_probe_def": probe.W_def,
        "W_probe_malicious": getattr(probe, "W_M", np.zeros_like(W_nodef)),
        "X_clean": _strip_bias(setup.test_Xa),
        "y_clean": setup.test_y,
        "X_backdoor": _strip_bias(setup.backdoor_Xa),
        "backdoor_indices": setup.backdoor_indices,
        "target": np.array(setup.config.target),
        **benign,
        "y_benign": np.asarray(probe.y_benign),
        "true_trigger_mask": setup.true_trigger.mask,
        "true_trigger_pattern": setup.true_trigger.pattern,
        "recovered_trigger_mask": probe.recovered_trigger.mask,
        "recovered_trigger_pattern": probe.recovered_trigger.pattern,
        "eta": np.array(float(probe.eta)),
        "p_B": np.array(float(probe.p_B)),
        "n_B": np.array(int(probe.n_B)),
        "lambdas": np.array([float(probe.lambda_c), float(probe.lambda_a)]),
    }
    meta = {**meta, "closed_form_applies": bool(probe.closed_form_applies)}
    return save_state(Path(directory) / STATE_NAME, arrays, meta)


def load_verification_state(directory: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load and validate the state; adds ``X_benign``, ``X_benign_true`` and ``X_benign_hat`` (no
    bias).
    """
    from linear_fl.state import load_state

    arrays, meta = load_state(Path(directory) / STATE_NAME)
    if "X_benign_bytes" in arrays:
        arrays["X_benign"] = arrays["X_benign_bytes"].astype(np.float64) / 255.0
    shape = arrays["true_trigger_pattern"].shape
    images = arrays["X_benign"].reshape((-1, *shape))
    for name, prefix in (("X_benign_true", "true_trigger"), ("X_benign_hat", "recovered_trigger")):
        stamped = stamp(images, arrays[f"{prefix}_mask"], arrays[f"{prefix}_pattern"])
        arrays[name] = np.asarray(stamped, dtype=np.float64).reshape(images.shape[0], -1)
    return arrays, meta


def recompute(
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    taus: list[float],
    metrics_tau: float,
    model_kind: str = "F-hat",
    clean_budget: float = 0.05,
) -> dict[str, Any]:
    """Theorem 1 (twin and probe pairs), Theorem 2 and the metrics, from the saved arrays only."""
    sets = EvaluationSets(
        X_clean=_with_bias(arrays["X_clean"]),
        y_clean=arrays["y_clean"],
        X_backdoor=_with_bias(arrays["X_backdoor"]),
        target=int(arrays["target"]),
    )
    lambda_c, lambda_a = (float(v) for v in arrays["lambdas"])
    rnd = HardeningRound(
        W_start=arrays["W_start"],
        X_clean=_with_bias(arrays["X_benign"]),
        y=arrays["y_benign"],
        X_true=_with_bias(arrays["X_benign_true"]),
        X_hat=_with_bias(arrays["X_benign_hat"]),
        eta=float(arrays["eta"]),
        p_B=float(arrays["p_B"]),
        lambda_c=lambda_c,
        lambda_a=lambda_a,
    )
    probe = ProbeInputs(
        rnd=rnd,
        W_nodef=arrays["W_probe_nodef"],
        W_def=arrays["W_probe_def"],
        deltaW_simulated=arrays["W_probe_def"] - arrays["W_probe_nodef"],
        closed_form_applies=bool(meta.get("closed_form_applies", True)),
    )
    theorem1, _ = theorem1_pair(arrays["W_nodef"], arrays["W_def"], sets, "twin")
    probe_t1, _ = theorem1_pair(probe.W_nodef, probe.W_def, sets, "probe")
    theorem2 = theorem2_round(probe, sets, model_kind, clean_budget).result
    metrics = threshold_metrics(arrays["W_nodef"], arrays["W_def"], sets, taus, metrics_tau)
    return {
        "theorem1": theorem1.to_dict(),
        "probe": {"theorem1": probe_t1.to_dict()},
        "theorem2": theorem2.to_dict(),
        "metrics": metrics,
    }
