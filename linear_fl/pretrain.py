"""Clean FedAvg pre-training until convergence, cached on disk (THEORY.md section 10, "Schedule").

Both clients are benign. Starting from ``W = 0``, each round every client runs
``pretrain_local_epochs`` of (mini-)batch gradient descent (``pretrain_lr``,
``pretrain_batch_size``) and the server averages. Stop when the relative change
of the global training loss ``L = sum_k (n_k/n) L(W; D_k)`` is below
``pretrain_tol``, i.e. ``|L_{t-1} - L_t| <= tol * L_t``, or after
``pretrain_max_rounds``. Deterministic by seed (the ``"pretrain"`` stream).

The result is cached under ``config.resolved_cache_dir()`` keyed by the sha256
of the pre-training fields of the config, the engine version, the data
fingerprint and the BLAS thread count (another count gives another model in the last bits, which
the FLIP twin amplifies). The cache is safe to delete; a file failing its sha256 check is
recomputed with a warning.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import ENGINE_VERSION, LinearFLConfig
from .data import ClientData, role_streams
from .model import mean_loss
from .parallel import blas_thread_count
from .server import fedavg
from .state import StateError, load_state, save_state
from .training import LocalTraining, clean_gradient, local_train


@dataclass(frozen=True)
class PretrainResult:
    W: np.ndarray  # (c, d+1) converged global model W_0
    rounds: int  # FedAvg rounds run
    losses: np.ndarray  # global training loss before round 1 and after each round
    converged: bool  # True iff the tolerance (not the round cap) stopped it
    from_cache: bool
    cache_path: Path | None


def global_loss(W: np.ndarray, clients: Sequence[ClientData]) -> float:
    """Sample-weighted loss over the union of the clients' data."""
    n = sum(c.n for c in clients)
    return float(sum(c.n * mean_loss(W, c.Xa, c.y) for c in clients) / n)


def cache_key(cfg: LinearFLConfig, data_fingerprint: str) -> str:
    payload = json.dumps(
        {
            "config": cfg.pretrain_fields(),
            "data": data_fingerprint,
            "version": ENGINE_VERSION,
            "blas_threads": blas_thread_count(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def train_clean(
    cfg: LinearFLConfig,
    clients: Sequence[ClientData],
    weights: Sequence[float] | np.ndarray,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Run the clean FedAvg rounds; returns ``(W, losses, converged)``."""
    rng = role_streams(cfg.seed)["pretrain"]
    training = LocalTraining(cfg.pretrain_lr, cfg.pretrain_local_epochs, cfg.pretrain_batch_size)
    W = np.zeros((num_classes, clients[0].Xa.shape[1]))
    losses = [global_loss(W, clients)]
    converged = False
    for _ in range(cfg.pretrain_max_rounds):
        models = [local_train(W, c.n, clean_gradient(c.Xa, c.y), training, rng) for c in clients]
        W = fedavg(W, models, weights)
        losses.append(global_loss(W, clients))
        if abs(losses[-2] - losses[-1]) <= cfg.pretrain_tol * losses[-1]:
            converged = True
            break
    return W, np.asarray(losses), converged


def pretrain(
    cfg: LinearFLConfig,
    clients: Sequence[ClientData],
    weights: Sequence[float] | np.ndarray,
    num_classes: int,
    data_fingerprint: str,
) -> PretrainResult:
    """Return the converged clean model ``W_0``, from the cache when a valid entry exists."""
    d1 = clients[0].Xa.shape[1]
    path = cfg.resolved_cache_dir() / f"pretrain-{cache_key(cfg, data_fingerprint)[:24]}"
    if cfg.use_cache and path.with_name(path.name + ".npz").exists():
        try:
            arrays, meta = load_state(path, expected_shapes={"W": (num_classes, d1)})
            return PretrainResult(
                arrays["W"],
                int(meta["rounds"]),
                arrays["losses"],
                bool(meta["converged"]),
                True,
                path,
            )
        except (StateError, KeyError) as exc:
            warnings.warn(
                f"pre-training cache {path} is invalid ({exc}); recomputing it",
                RuntimeWarning,
                stacklevel=2,
            )
    W, losses, converged = train_clean(cfg, clients, weights, num_classes)
    rounds = len(losses) - 1
    if cfg.use_cache:
        save_state(
            path,
            {"W": W, "losses": losses},
            {
                "config": cfg.pretrain_fields(),
                "seed": cfg.seed,
                "data": data_fingerprint,
                "rounds": rounds,
                "converged": converged,
            },
        )
    return PretrainResult(W, rounds, losses, converged, False, path if cfg.use_cache else None)
