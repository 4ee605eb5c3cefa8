"""FLIP's per-client state across rounds: a typed record, checkpointed as ``flip_*`` keys.

The engine keeps one ``state`` dict per client and checkpoints it (deepfl.checkpoint: numpy
arrays and plain values). FLIP's part of it is a :class:`FlipClientState`; :meth:`to_dict` gives
the ``flip_<field>`` keys the checkpoint stores, :meth:`from_dict` reads them back (and refuses an
unknown ``flip_*`` key, so a renamed field cannot be silently lost). A field that is ``None`` was
never set and is not stored.

Shapes: C classes, H x W images with C_in channels, P label-specific directions.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

__all__ = ["FlipClientState"]


@dataclass
class FlipClientState:
    """One benign client's FLIP memory (paper section 3, Algorithm 1).

    Attributes:
        times_selected: rounds this client was selected in (its warm-up is the first).
        distance: (C, C) the pair distance matrix ``D`` (Algorithm 1, :mod:`.distance`).
        mask_size: (C, C) last mask L1 per (source, target) direction.
        universal_masks, universal_patterns: (C, H, W) / (C, C_in, H, W) the cached universal
            triggers, NaN for targets without a problem.
        universal_attack_acc, universal_success: per inverted universal target.
        warmup_round: the round of the (last) warm-up; ``warmup_masks`` / ``warmup_patterns``
            are its universal triggers as float32 (Figure 2c).
        refresh_round: the round of the last per-round universal refresh (``fliplab``).
        focus_targets: (k,) the targets Neural Cleanse's outlier test flagged (``fliplab``).
        suspect_target, suspect_sources, suspect_mask, suspect_pattern: the remembered
            suspect trigger (``focus_memory``).
        last_pairs: (P, 3) the last selected pairs: source, target, symmetric.
        pair_round: the round of the last label-specific inversion; ``pair_masks`` /
            ``pair_patterns`` / ``pair_directions`` ((P, 2): source, target) its triggers as
            float32 (Figure 2c).
        last_stats: the last round's statistics (floats), for the engine's metrics.
    """

    PREFIX: ClassVar[str] = "flip_"

    times_selected: int | None = None
    distance: np.ndarray | None = None
    mask_size: np.ndarray | None = None
    universal_masks: np.ndarray | None = None
    universal_patterns: np.ndarray | None = None
    universal_attack_acc: np.ndarray | None = None
    universal_success: np.ndarray | None = None
    warmup_round: int | None = None
    warmup_masks: np.ndarray | None = None
    warmup_patterns: np.ndarray | None = None
    refresh_round: int | None = None
    focus_targets: np.ndarray | None = None
    suspect_target: int | None = None
    suspect_sources: np.ndarray | None = None
    suspect_mask: np.ndarray | None = None
    suspect_pattern: np.ndarray | None = None
    last_pairs: np.ndarray | None = None
    pair_round: int | None = None
    pair_masks: np.ndarray | None = None
    pair_patterns: np.ndarray | None = None
    pair_directions: np.ndarray | None = None
    last_stats: dict[str, float] | None = None

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The ``flip_*`` keys a state dict may hold."""
        return tuple(cls.PREFIX + f.name for f in fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """``{"flip_<field>": value}`` for every field that is set."""
        return {
            self.PREFIX + f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not None
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> FlipClientState:
        """The FLIP fields of an engine ``state`` dict (other keys are ignored).

        Raises:
            KeyError: for a ``flip_*`` key that is no field (a typo or a state of another version).
        """
        known = set(cls.keys())
        unknown = sorted(k for k in state if k.startswith(cls.PREFIX) and k not in known)
        if unknown:
            raise KeyError(f"unknown FLIP state key(s) {unknown}; known: {sorted(known)}")
        values = {k[len(cls.PREFIX) :]: v for k, v in state.items() if k in known}
        if values.get("last_stats") is not None:
            values["last_stats"] = {str(k): float(v) for k, v in values["last_stats"].items()}
        for name in ("times_selected", "warmup_round", "refresh_round", "suspect_target"):
            if values.get(name) is not None:
                values[name] = int(values[name])
        return cls(**values)

    def save_to(self, state: dict[str, Any]) -> None:
        """Write the set fields into the engine's ``state`` (in place, other keys kept)."""
        state.update(self.to_dict())
