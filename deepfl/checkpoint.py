"""Checkpoints of a run (resume) and the cache of pre-trained clean models (reuse across runs).

A checkpoint holds everything a resumed run needs to continue exactly: the round index, the global
state vector, the clients' persistent states (no optimiser state: optimisers are rebuilt every
round), the server defense state, and torch's global RNG state (the engine's own streams are
derived from (seed, round, client), so they need no saving).

Checkpoints are written by this engine into the run directory and read back with
``weights_only=False`` because client states may hold numpy arrays: load only run directories
you produced.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from deepfl.io import write_bytes_atomic

CHECKPOINT_NAME = "checkpoint.pt"


def save_atomic(path: str | Path, payload: dict[str, Any]) -> None:
    """torch.save ``payload`` to ``path`` atomically (temp file + os.replace)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load(path: str | Path, device: torch.device) -> dict[str, Any]:
    """Read a checkpoint/cache entry written by :func:`save_atomic`, tensors mapped to ``device``."""
    return torch.load(path, map_location=device, weights_only=False)


def rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
