"""The per-client class-distance matrix of FLIP's cached warm-up (paper section 3).

``D[s, t]`` estimates how hard it is to flip class ``s`` to class ``t`` (NaN = unknown, and on
the diagonal). Two measurements of one inversion problem (:class:`~.inversion.InversionResult`):

* ``"loss_variance"`` (paper mode): the variance over optimisation steps of the mean CE loss of
  source ``s``'s samples toward ``t`` -- "classes far from the target class have larger loss
  variances" (section 3, Cached Warm-up; the paper's words "loss changes during optimization").
* ``"loss_variance_samples"`` (the other reading of the same sentence): the variance over the
  source's samples of their CE loss toward ``t``, averaged over the optimisation steps.
* ``"mask_size"``: ``|m|_1`` of the inverted mask (Neural Cleanse's distance, Tao et al. 2022,
  App. A.1 "Class distance"); a universal problem gives the same value to all its sources.
* ``"mask_growth"`` (released code): the warm-up's mask L1 divided by the largest one; a hardened
  direction then moves to the average of its old value and the relative growth of its mask,
  ``D[s, t] <- (D[s, t] + (|m|_new - |m|_old) / |m|_old) / 2`` (``|m|_old``: the last mask L1 of
  ``s -> t``, kept in ``mask_sizes``; an entry without one takes 0, as the release does).

The warm-up fills ``D`` from the universal problems (one per target); every hardened direction
then updates its entry; except for ``"mask_growth"`` by an exponential moving average
``D[s, t] <- (1 - beta) * D[s, t] + beta * new`` (``beta = distance_momentum``; an unknown entry
takes ``new``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .inversion import InversionResult

__all__ = [
    "METHODS",
    "measure",
    "warmup_distance_matrix",
    "update_distance_matrix",
    "mask_size_matrix",
    "update_mask_sizes",
    "pairs_by_distance",
]

METHODS: tuple[str, ...] = ("loss_variance", "loss_variance_samples", "mask_size", "mask_growth")


def measure(result: InversionResult, source: int, method: str) -> float:
    """Distance measurement of ``source -> result.target`` from one inversion (NaN if unseen)."""
    if method == "loss_variance":
        return float(result.per_source_loss_variance.get(int(source), np.nan))
    if method == "loss_variance_samples":
        return float(result.per_source_sample_variance.get(int(source), np.nan))
    if method in ("mask_size", "mask_growth"):
        return float(result.mask_l1)
    raise ValueError(f"distance method must be one of {', '.join(METHODS)}; got {method!r}.")


def warmup_distance_matrix(
    results: Iterable[InversionResult], num_classes: int, method: str
) -> np.ndarray:
    """(num_classes, num_classes) float64 ``D[s, t]`` from the universal problems (NaN =
    unknown).
    """
    matrix = np.full((num_classes, num_classes), np.nan)
    for result in results:
        for source in result.source_classes:
            matrix[source, result.target] = measure(result, source, method)
    np.fill_diagonal(matrix, np.nan)
    if method == "mask_growth" and np.any(np.isfinite(matrix)) and np.nanmax(matrix) > 0:
        matrix /= np.nanmax(matrix)  # the release's mat_diff /= np.max(mat_diff)
    return matrix


def update_distance_matrix(
    matrix: np.ndarray,
    results: Iterable[InversionResult],
    method: str,
    momentum: float,
    mask_sizes: np.ndarray | None = None,
) -> np.ndarray:
    """New matrix with every (source, target) of ``results`` moved toward its new measurement.

    ``mask_sizes`` (the last mask L1 of each direction, :func:`mask_size_matrix`) is needed by
    ``"mask_growth"`` only."""
    updated = np.array(matrix, dtype=np.float64, copy=True)
    if method == "mask_growth" and mask_sizes is None:
        raise ValueError(
            "distance 'mask_growth' needs mask_sizes (the last mask L1 of each direction)."
        )
    for result in results:
        for source in result.source_classes:
            new = measure(result, source, method)
            if not np.isfinite(new):
                continue
            old = updated[source, result.target]
            if method == "mask_growth" and mask_sizes is not None:
                last = mask_sizes[source, result.target]
                growth = (new - last) / last if np.isfinite(last) and last > 0 else np.nan
                updated[source, result.target] = (
                    0.0
                    if not np.isfinite(growth)
                    else (growth if not np.isfinite(old) else (old + growth) / 2)
                )
            else:
                updated[source, result.target] = (
                    new if not np.isfinite(old) else (1 - momentum) * old + momentum * new
                )
    return updated


def mask_size_matrix(results: Iterable[InversionResult], num_classes: int) -> np.ndarray:
    """(C, C) mask L1 of the warm-up's universal triggers (``|m_t|_1`` for every source of
    ``t``).
    """
    return warmup_distance_matrix(results, num_classes, "mask_size")


def update_mask_sizes(mask_sizes: np.ndarray, results: Iterable[InversionResult]) -> np.ndarray:
    """New (C, C) matrix with each inverted direction's latest mask L1."""
    updated = np.array(mask_sizes, dtype=np.float64, copy=True)
    for result in results:
        for source in result.source_classes:
            updated[source, result.target] = float(result.mask_l1)
    return updated


def pairs_by_distance(matrix: np.ndarray, priority: str = "largest") -> list[tuple[int, int]]:
    """Ordered pairs ``(s, t)`` with a known distance, ``"largest"`` (paper) or ``"smallest"``
    first.

    Ties keep (s, t) row-major order (stable sort)."""
    if priority not in ("largest", "smallest"):
        raise ValueError(f"priority must be 'largest' or 'smallest'; got {priority!r}.")
    sources, targets = np.nonzero(np.isfinite(matrix))
    values = matrix[sources, targets]
    order = np.argsort(-values if priority == "largest" else values, kind="stable")
    return [(int(sources[i]), int(targets[i])) for i in order]
