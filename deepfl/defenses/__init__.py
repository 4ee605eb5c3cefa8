"""Server-side defenses: robust aggregation rules selected by name (deepfl/CONTRACT.md, "Server defenses").

``REGISTRY[name](num_attackers=f, **params)(updates, context)`` -> aggregated update ``(d,)``.
"""

from __future__ import annotations

from typing import Any

from deepfl.defenses import bulyan, dnc, fedavg, flame, fltrust, foolsgold, krum, median, rfa, trimmed_mean  # noqa: F401  (registration)
from deepfl.defenses.base import REGISTRY, AggregationContext, Aggregator, register


def make_aggregator(name: str, num_attackers: int = 0, **params: Any) -> Aggregator:
    """Build the defense registered as ``name``; ``ValueError`` listing the known names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown defense {name!r}; known defenses are {sorted(REGISTRY)}")
    return REGISTRY[name](num_attackers=num_attackers, **params)


__all__ = ["REGISTRY", "AggregationContext", "Aggregator", "make_aggregator", "register"]
