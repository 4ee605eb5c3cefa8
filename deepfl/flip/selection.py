"""Pair selection and (a)symmetric hardening choice (paper section 3, Algorithms 1-2).

Each local round FLIP hardens ``num_pairs`` class pairs taken from the cached distance matrix,
``"largest"`` distance first ("we consider pairs with larger distance capacity as having greater
potential"), skipping pairs whose source has too few local samples. With probability
``exploration_prob`` a pick is instead uniform over all eligible pairs (released code: 0.3).

A pair ``(s, t)`` is hardened SYMMETRICALLY (both directions ``s -> t`` and ``t -> s``, Alg. 2
lines 5-9) when the client holds more than ``min_samples`` samples of both labels (paper: > 5),
ASYMMETRICALLY (``s -> t`` only, Alg. 2 lines 12-15) when only the source has enough.

``only_target`` (the ``oracle_pair_target`` ablation, ground truth, not in the paper) keeps only
the pairs ``s -> only_target``: the backdoor pairs of an all-to-one attack. They are ranked among
themselves by the same distance, so the pair is known but the triggers are still inverted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .distance import pairs_by_distance

__all__ = ["HardeningPair", "select_pairs"]


@dataclass(frozen=True)
class HardeningPair:
    """A selected class pair; ``symmetric`` means both directions are inverted and stamped."""

    source: int
    target: int
    symmetric: bool

    def directions(self) -> list[tuple[int, int]]:
        """``[(s, t)]`` or ``[(s, t), (t, s)]``: (source class stamped, inversion target)."""
        forward = [(self.source, self.target)]
        return forward + [(self.target, self.source)] if self.symmetric else forward


def select_pairs(
    distance: np.ndarray,
    class_counts: np.ndarray,
    *,
    num_pairs: int,
    min_samples: int,
    priority: str = "largest",
    exploration_prob: float = 0.0,
    rng: np.random.Generator | None = None,
    only_target: int | None = None,
) -> list[HardeningPair]:
    """Choose up to ``num_pairs`` distinct unordered pairs to harden this round.

    Args:
        distance: (C, C) cached ``D[s, t]`` (NaN = unknown; never chosen by priority).
        class_counts: (C,) local sample count per class.
        num_pairs: pairs wanted (fewer are returned if fewer are eligible).
        min_samples: a label is "available" with MORE than this many local samples.
        priority: ``"largest"`` (paper) or ``"smallest"`` distance first.
        exploration_prob: probability that a pick is uniform over eligible pairs instead.
        rng: numpy Generator for exploration (required when ``exploration_prob > 0``).
        only_target: keep only pairs ``s -> only_target`` (module docstring); None = all pairs.
    """
    counts = np.asarray(class_counts)
    num_classes = distance.shape[0]
    if distance.shape != (num_classes, num_classes) or counts.shape != (num_classes,):
        raise ValueError(
            f"distance must be (C, C) and class_counts (C,); got {distance.shape}, {counts.shape}."
        )
    if exploration_prob > 0 and rng is None:
        raise ValueError("exploration_prob > 0 needs rng (a numpy Generator) for the random picks.")
    if only_target is not None and not 0 <= only_target < num_classes:
        raise ValueError(f"only_target must be a class in [0, {num_classes}); got {only_target}.")
    available = counts > min_samples
    targets = range(num_classes) if only_target is None else (only_target,)
    ranked = [
        (s, t) for s, t in pairs_by_distance(distance, priority) if available[s] and t in targets
    ]
    eligible = [(s, t) for s in np.flatnonzero(available) for t in targets if t != s]
    chosen: list[HardeningPair] = []
    used: set[frozenset[int]] = set()
    while len(chosen) < num_pairs:
        explore = rng is not None and exploration_prob > 0 and rng.random() < exploration_prob
        pool = [p for p in (eligible if explore else ranked) if frozenset(p) not in used]
        if not pool and explore:
            pool = [p for p in ranked if frozenset(p) not in used]
        if not pool:
            break
        pick = int(rng.integers(len(pool))) if rng is not None and explore else 0
        source, target = pool[pick]
        used.add(frozenset((int(source), int(target))))
        chosen.append(HardeningPair(int(source), int(target), symmetric=bool(available[target])))
    return chosen
