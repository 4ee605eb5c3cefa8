"""Server-side defenses: robust aggregation rules selected by name (deepfl/CONTRACT.md, "Server
defenses").

``REGISTRY[name](num_attackers=f, **params)(updates, context)`` -> aggregated update ``(d,)``.
``REGISTRY`` is a :class:`deepfl.registry.Registry`; ``REGISTRY[name]`` is the one lookup of a
defense by name (an unknown name raises ``deepfl.registry.UnknownNameError``).
"""

from __future__ import annotations

from typing import Any

# imported for their registration in REGISTRY
from deepfl.defenses import (  # noqa: F401
    bulyan,
    dnc,
    fedavg,
    flame,
    fltrust,
    foolsgold,
    krum,
    median,
    rfa,
    trimmed_mean,
)
from deepfl.defenses.base import REGISTRY, AggregationContext, Aggregator, register


def make_aggregator(name: str, num_attackers: int = 0, **params: Any) -> Aggregator:
    """``REGISTRY[name](num_attackers=num_attackers, **params)``.

    Raises:
        deepfl.registry.UnknownNameError: (a KeyError and a ConfigError) no defense ``name``.
        fldata.params.ConfigError: a param the defense does not take, or a bad value.
    """
    return REGISTRY[name](num_attackers=num_attackers, **params)


__all__ = ["REGISTRY", "AggregationContext", "Aggregator", "make_aggregator", "register"]
