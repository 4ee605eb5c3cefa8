"""How far the last-layer bracket carries when all layers train (issue 15, part b).

A full round changes the features too: ``z = W \\tilde\\phi(x)`` becomes ``z' = W'
\\tilde\\phi'(x)``. The *last-layer bracket* is Theorem 1 (THEORY.md section 3) computed as if only
the output layer had moved, on the features of the no-defense model ``G^{nd}_{R+1}``:

    ``u = (W' - W) \\tilde\\phi_{nd}(x)``,  ``lb = \\min_k u_k - u_y``,  ``ub = \\max_k u_k - u_y``,
    ``lb^J = (s(z) - e_y)^T u``, R2 upper ``lb^J + (\\max u - \\min u)^2/8``,

and is compared with the actual loss change of the two full models,
``\\Delta\\ell = CE(z', y) - CE(z, y)``. The bracket holds exactly when the features do not move
(part a); here a sample is *inside* when ``lb <= \\Delta\\ell <= ub`` and its *distance* is
``\\max(lb - \\Delta\\ell, \\Delta\\ell - ub, 0)`` nats.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from theory.theorem1 import (
    ORDERING_RTOL,
    LossChangeBounds,
    bounds_from_logits,
    cross_entropy,
    lower_bound,
    upper_bound,
)


def last_layer_bracket(
    logits_nodef: np.ndarray,
    logits_def: np.ndarray,
    features_nodef: np.ndarray,
    W_nodef: np.ndarray,
    W_def: np.ndarray,
    labels: np.ndarray,
) -> LossChangeBounds:
    """Theorem-1 quantities with ``u = (W' - W)\\tilde\\phi_{nd}``, ``z`` = the no-defense logits,
    and ``actual`` replaced by the full models' loss change (module docstring)."""
    u = features_nodef @ (W_def - W_nodef).T
    bounds = bounds_from_logits(logits_nodef, u, labels)
    actual = cross_entropy(logits_def, labels) - cross_entropy(logits_nodef, labels)
    return dataclasses.replace(bounds, actual=actual)


def frozen_round_bracket(
    lb_ub_features: np.ndarray,
    W_nodef: np.ndarray,
    W_def: np.ndarray,
    labels: np.ndarray,
    actual: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Theorem 1's ``(lb, ub)`` of a last-layer-only round (``u = (W'-W)\\tilde\\phi``) beside the
    loss change ``actual`` of another round; F4: ``[lb, ub]`` is the tightest bracket given ``(u,
    y)``."""
    u = lb_ub_features @ (W_def - W_nodef).T
    return lower_bound(u, labels), upper_bound(u, labels), np.asarray(actual, dtype=np.float64)


def containment(
    lb: np.ndarray, ub: np.ndarray, actual: np.ndarray, scale: np.ndarray
) -> dict[str, Any]:
    """Fraction of samples with ``lb <= actual <= ub`` (tolerance ``ORDERING_RTOL * scale``), the
    counts below / above, and the distance of the others to the bracket: median, 90th percentile and
    max in nats, and the median relative to the bracket width ``ub - lb`` (module docstring)."""
    tol = ORDERING_RTOL * scale
    below, above = actual < lb - tol, actual > ub + tol
    outside = below | above
    distance = np.maximum(np.maximum(lb - actual, actual - ub), 0.0)[outside]
    width = (ub - lb)[outside]
    relative = distance[width > 0] / width[width > 0]
    n = int(actual.size)

    def stat(values: np.ndarray, q: float) -> float | None:
        return float(np.quantile(values, q)) if values.size else None

    return {
        "n": n,
        "inside_fraction": float(1.0 - outside.mean()) if n else None,
        "outside": int(outside.sum()),
        "below": int(below.sum()),
        "above": int(above.sum()),
        "distance_median": stat(distance, 0.5),
        "distance_p90": stat(distance, 0.9),
        "distance_max": stat(distance, 1.0),
        "relative_distance_median": stat(relative, 0.5),
    }


def carry_summary(bounds: LossChangeBounds) -> dict[str, Any]:
    """Dataset averages of the bracket and the actual change, ``violations`` (samples outside
    ``[lb, ub]``), the Jensen chain's failures (``lb^J <= actual <= min(ub, R2)``) and
    :func:`containment`."""
    inside = containment(bounds.lb, bounds.ub, bounds.actual, bounds.scale)
    jensen = containment(bounds.lb_jensen, bounds.ub_best, bounds.actual, bounds.scale)
    return {
        "lb": float(bounds.lb.mean()),
        "lb_jensen": float(bounds.lb_jensen.mean()),
        "actual": float(bounds.actual.mean()),
        "ub": float(bounds.ub.mean()),
        "ub_r2": float(bounds.ub_best.mean()),
        "n": inside["n"],
        "violations": inside["outside"],
        "violations_jensen_chain": jensen["outside"],
        "inside_jensen_fraction": jensen["inside_fraction"],
        **inside,
    }
