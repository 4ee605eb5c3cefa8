"""The per-client class-distance matrix of FLIP's cached warm-up (paper section 3).

``D[s, t]`` estimates how hard it is to flip class ``s`` to class ``t`` (NaN = unknown, and on
the diagonal). Two measurements of one inversion problem (:class:`~.inversion.InversionResult`):

* ``"loss_variance"`` (paper, default): the variance over optimisation steps of the mean CE
  loss of source ``s``'s samples toward ``t`` -- "classes far from the target class have larger
  loss variances" (section 3, Cached Warm-up).
* ``"mask_size"`` (released code): ``|m|_1`` of the inverted mask (Neural Cleanse's distance,
  Tao et al. 2022); a universal problem gives the same value to all its sources.

The warm-up fills ``D`` from the universal problems (one per target); every hardened direction
then updates its entry by an exponential moving average
``D[s, t] <- (1 - beta) * D[s, t] + beta * new`` (``beta = distance_momentum``; an unknown entry
takes ``new``). The released code's "moving average of relative mask growth" is approximated by
the same average of the new mask size.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .inversion import InversionResult

__all__ = ["measure", "warmup_distance_matrix", "update_distance_matrix", "pairs_by_distance"]


def measure(result: InversionResult, source: int, method: str) -> float:
    """Distance measurement of ``source -> result.target`` from one inversion (NaN if unseen)."""
    if method == "loss_variance":
        return float(result.per_source_loss_variance.get(int(source), np.nan))
    if method == "mask_size":
        return float(result.mask_l1)
    raise ValueError(f"distance method must be 'loss_variance' or 'mask_size'; got {method!r}.")


def warmup_distance_matrix(results: Iterable[InversionResult], num_classes: int, method: str) -> np.ndarray:
    """(num_classes, num_classes) float64 ``D[s, t]`` from the universal problems (NaN = unknown)."""
    matrix = np.full((num_classes, num_classes), np.nan)
    for result in results:
        for source in result.source_classes:
            matrix[source, result.target] = measure(result, source, method)
    np.fill_diagonal(matrix, np.nan)
    return matrix


def update_distance_matrix(matrix: np.ndarray, results: Iterable[InversionResult], method: str,
                           momentum: float) -> np.ndarray:
    """New matrix with every (source, target) of ``results`` moved toward its new measurement."""
    updated = np.array(matrix, dtype=np.float64, copy=True)
    for result in results:
        for source in result.source_classes:
            new = measure(result, source, method)
            if not np.isfinite(new):
                continue
            old = updated[source, result.target]
            updated[source, result.target] = new if not np.isfinite(old) else (1 - momentum) * old + momentum * new
    return updated


def pairs_by_distance(matrix: np.ndarray, priority: str = "largest") -> list[tuple[int, int]]:
    """Ordered pairs ``(s, t)`` with a known distance, ``"largest"`` (paper) or ``"smallest"`` first.

    Ties keep (s, t) row-major order (stable sort)."""
    if priority not in ("largest", "smallest"):
        raise ValueError(f"priority must be 'largest' or 'smallest'; got {priority!r}.")
    sources, targets = np.nonzero(np.isfinite(matrix))
    values = matrix[sources, targets]
    order = np.argsort(-values if priority == "largest" else values, kind="stable")
    return [(int(sources[i]), int(targets[i])) for i in order]
