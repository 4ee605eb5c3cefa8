"""Synthetic deep-probe states: random features, one full-batch round simulated sample by sample.

The simulation here is written independently of :mod:`theory.frozen` (explicit per-sample gradient
sums), so tests can compare the library's closed form and frozen models against it.
"""

from __future__ import annotations

import numpy as np

from theory.deep.state import DeepProbeState


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _per_sample_gradient_sum(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(1/n) \\sum_j (s(W x_j) - e_{y_j}) x_j^T`` by an explicit loop."""
    total = np.zeros_like(W)
    for x, label in zip(X, y, strict=True):
        residual = _softmax((W @ x)[None, :])[0]
        residual[label] -= 1.0
        total += np.outer(residual, x)
    return total / len(X)


def _features(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    return np.concatenate([rng.gamma(1.0, 1.0, size=(n, dim)), np.ones((n, 1))], axis=1)


def synthetic_state(
    seed: int = 0,
    classes: int = 4,
    dim: int = 6,
    clients: int = 3,
    features_move: bool = False,
    pool_per_client: tuple[int, ...] = (5, 0, 8),
) -> DeepProbeState:
    """A probe state whose protocol round is simulated exactly (paper convention, oblivious
    attacker); the SGD round reuses the protocol models, and the "full" round changes only the last
    layer unless ``features_move``."""
    rng = np.random.default_rng(seed)
    W_start = rng.normal(size=(classes, dim + 1))
    X_clean, X_backdoor = _features(rng, 40, dim), _features(rng, 30, dim)
    y_clean, target, eta = rng.integers(classes, size=40), 1, 0.3
    weights = rng.uniform(0.05, 0.2, size=clients)
    attack = rng.normal(scale=0.05, size=W_start.shape)
    nodef, fdef = W_start + attack, W_start + attack
    pools = {"pool_X_true": [], "pool_X_hat": [], "pool_y": [], "pool_client": []}
    for client, (p, size) in enumerate(zip(weights, pool_per_client, strict=True)):
        X_local, y_local = _features(rng, 10, dim), rng.integers(classes, size=10)
        X_true = _features(rng, size, dim)
        X_hat = X_true + np.concatenate(
            [rng.normal(scale=0.1, size=(size, dim)), np.zeros((size, 1))], axis=1
        )
        y_pool = rng.integers(classes, size=size)
        clean_step = -p * eta * _per_sample_gradient_sum(W_start, X_local, y_local)
        nodef = nodef + clean_step
        fdef = (
            fdef
            + clean_step
            - (p * eta * _per_sample_gradient_sum(W_start, X_hat, y_pool) if size else 0.0)
        )
        for key, value in zip(pools, (X_true, X_hat, y_pool, np.full(size, client)), strict=True):
            pools[key].append(value)
    pool = {key: np.concatenate(values) for key, values in pools.items()}
    pool["pool_y"], pool["pool_client"] = (
        pool["pool_y"].astype(np.int64),
        pool["pool_client"].astype(np.int64),
    )
    shift = rng.normal(scale=0.05, size=X_clean.shape) * features_move
    shift[:, -1] = 0.0
    full_X_clean, full_X_backdoor = X_clean + shift, X_backdoor + shift[: len(X_backdoor)]
    return DeepProbeState(
        X_clean=X_clean,
        y_clean=y_clean,
        X_backdoor=X_backdoor,
        W_start=W_start,
        sgd_W_nodef=nodef,
        sgd_W_def=fdef,
        protocol_W_nodef=nodef,
        protocol_W_def=fdef,
        **pool,
        pool_input_error=np.abs(pool["pool_X_hat"] - pool["pool_X_true"]).max(axis=1, initial=0.0),
        benign_weights=weights,
        full_logits_nodef_clean=full_X_clean @ nodef.T,
        full_logits_def_clean=(X_clean + 2 * shift) @ fdef.T,
        full_logits_nodef_backdoor=full_X_backdoor @ nodef.T,
        full_logits_def_backdoor=(X_backdoor + 2 * shift[: len(X_backdoor)]) @ fdef.T,
        full_X_clean=full_X_clean,
        full_X_backdoor=full_X_backdoor,
        full_W_nodef=nodef,
        full_W_def=fdef,
        target=target,
        eta=eta,
        sgd_logit_error=0.0,
        meta={
            "run_dir": "synthetic",
            "round": 1,
            "probe_round": 2,
            "source": "synthetic",
            "seed": seed,
            "dataset": "synthetic",
            "attack": "continuous",
            "model": "linear",
            "benign": list(range(clients)),
            "attackers": [9],
            "poisoned": True,
            "feature_layer": "synthetic",
        },
    )
