"""FedAvg server: ``W_{t+1} = W_t + sum_k p_k (W_k - W_t)`` (THEORY.md section 2, paper eq. 8)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def aggregation_weights(sample_counts: Sequence[int], convention: str) -> np.ndarray:
    """Client weights ``p_k``: ``"equal"`` -> ``1/K``; ``"samples"`` -> ``n_k / sum_j n_j``."""
    counts = np.asarray(sample_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or np.any(counts <= 0):
        raise ValueError(
            f"sample_counts must be a non-empty list of positive counts, got {list(sample_counts)}"
        )
    if convention == "equal":
        return np.full(counts.size, 1.0 / counts.size)
    if convention == "samples":
        return counts / counts.sum()
    raise ValueError(f"aggregation convention must be 'equal' or 'samples', got {convention!r}")


def check_finite_update(W: np.ndarray, who: str) -> None:
    """Raise ``ValueError`` naming the client if its model holds NaN or inf."""
    if not np.all(np.isfinite(W)):
        bad = int(np.size(W) - np.count_nonzero(np.isfinite(W)))
        raise ValueError(
            f"{who} submitted a model with {bad} NaN/inf entries; refusing to aggregate it"
        )


def fedavg(
    W_t: np.ndarray,
    client_models: Sequence[np.ndarray],
    weights: Sequence[float] | np.ndarray,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """``W_t + sum_k p_k (W_k - W_t)``; checks shapes and finiteness of every client model."""
    if len(client_models) != len(weights):
        raise ValueError(f"got {len(client_models)} client models but {len(weights)} weights")
    names = list(names) if names is not None else [f"client {k}" for k in range(len(client_models))]
    W_next = W_t.copy()
    for W_k, p_k, who in zip(client_models, weights, names, strict=True):
        if W_k.shape != W_t.shape:
            raise ValueError(f"{who} model has shape {W_k.shape}, expected {W_t.shape}")
        check_finite_update(W_k, who)
        W_next += p_k * (W_k - W_t)
    return W_next
