"""A few inverted triggers of a run, for the paper's Figure 2c (``flip_triggers.npz``).

Taken from the FLIP clients' states at the end of a run (nothing extra is computed):

* ``"warmup"``: the universal triggers (every target) of the first :data:`WARMUP_CLIENTS` clients
  to warm up (earliest warm-up round, then lowest client id), as inverted in their warm-up;
* ``"refresh"``: the universal triggers of the most recent per-round refresh (``fliplab``) of any
  client (latest round, then lowest id);
* ``"pair"``: the last label-specific triggers of the warm-up clients (source -> target).

Format (every array has one row per trigger; no pickles, ``np.load`` reads it as is):

* ``masks`` (N, H, W) float16 in [0, 1], ``patterns`` (N, C, H, W) float16 in [0, 1];
* ``client``, ``round``, ``target``, ``source`` (N,) int64 (``source = -1``: every non-target
  class, a universal trigger); ``kind`` (N,) unicode: ``warmup`` / ``refresh`` / ``pair``;
* ``mask_l1`` (N,) float32: ``|m|_1`` in pixels.
"""

from __future__ import annotations

import numpy as np

from .state import FlipClientState

__all__ = ["WARMUP_CLIENTS", "collect_triggers"]

WARMUP_CLIENTS = 2


Row = tuple[str, int, int, int, int, np.ndarray, np.ndarray]


def collect_triggers(client_states: dict[int, dict]) -> dict[str, np.ndarray]:
    """The arrays of ``flip_triggers.npz`` (module docstring); empty arrays when no client warmed
    up.
    """
    flips = {int(c): FlipClientState.from_dict(s) for c, s in client_states.items()}
    warmed = sorted(
        (int(f.warmup_round), c)
        for c, f in flips.items()
        if f.warmup_masks is not None and f.warmup_round is not None
    )
    rows: list[Row] = []
    for warmup_round, client in warmed[:WARMUP_CLIENTS]:
        flip = flips[client]
        assert flip.warmup_masks is not None and flip.warmup_patterns is not None
        rows += _universal_rows(
            "warmup", client, warmup_round, flip.warmup_masks, flip.warmup_patterns
        )
    refreshed = sorted(
        (-int(f.refresh_round), c)
        for c, f in flips.items()
        if f.refresh_round is not None and f.universal_masks is not None
    )
    if refreshed:
        negative_round, client = refreshed[0]
        flip = flips[client]
        assert flip.universal_masks is not None and flip.universal_patterns is not None
        rows += _universal_rows(
            "refresh", client, -negative_round, flip.universal_masks, flip.universal_patterns
        )
    for _, client in warmed[:WARMUP_CLIENTS]:
        rows += _pair_rows(client, flips[client])
    return _arrays(rows)


def _pair_rows(client: int, flip: FlipClientState) -> list[Row]:
    """The client's last label-specific triggers (none before its first pair inversion)."""
    if flip.pair_masks is None or flip.pair_patterns is None or flip.pair_directions is None:
        return []
    round_index = int(flip.pair_round) if flip.pair_round is not None else -1
    return [
        ("pair", client, round_index, int(target), int(source), mask, pattern)
        for (source, target), mask, pattern in zip(
            flip.pair_directions, flip.pair_masks, flip.pair_patterns, strict=True
        )
    ]


def _universal_rows(
    kind: str, client: int, round_index: int, masks: np.ndarray, patterns: np.ndarray
) -> list[Row]:
    return [
        (kind, client, round_index, target, -1, masks[target], patterns[target])
        for target in range(masks.shape[0])
        if np.all(np.isfinite(masks[target]))
    ]


def _arrays(
    rows: list[Row],
) -> dict[str, np.ndarray]:
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return {
            "masks": np.zeros((0, 0, 0), np.float16),
            "patterns": np.zeros((0, 0, 0, 0), np.float16),
            "client": empty,
            "round": empty,
            "target": empty,
            "source": empty,
            "kind": np.zeros(0, dtype="<U7"),
            "mask_l1": np.zeros(0, np.float32),
        }
    masks = np.stack([np.asarray(r[5], dtype=np.float32) for r in rows])
    return {
        "masks": masks.astype(np.float16),
        "patterns": np.stack([np.asarray(r[6], dtype=np.float32) for r in rows]).astype(np.float16),
        "client": np.array([r[1] for r in rows], dtype=np.int64),
        "round": np.array([r[2] for r in rows], dtype=np.int64),
        "target": np.array([r[3] for r in rows], dtype=np.int64),
        "source": np.array([r[4] for r in rows], dtype=np.int64),
        "kind": np.array([r[0] for r in rows], dtype="<U7"),
        "mask_l1": masks.sum(axis=(1, 2)).astype(np.float32),
    }
