"""ACC and ASR of one evaluation at every confidence threshold tau, typed and serialisable.

ACC(tau) and ASR(tau) (fldata.metrics, computed by deepfl.evaluate) are held as tuples aligned
with the float taus they were computed at, and looked up by exact tau
(:meth:`EvaluationResult.rates_at`).

On disk (a ``metrics.jsonl`` row, ``summary.json``'s ``final``) the result keeps the engine's
original JSON shape, so every run directory written before this type existed reads back unchanged
and new ones read in old tools: ``{"acc": {str(tau): rate}, "asr": {str(tau): rate},
"per_class_acc": [...]}``. A key ``str(tau)`` of a Python float parses back to exactly that float
(``float(repr(x)) == x``), which is what makes the exact-match lookup safe. Torch-free, so figures
and the reproduction tables read results with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EvaluationResult", "TauNotEvaluatedError"]


class TauNotEvaluatedError(KeyError):
    """A tau at which an evaluation was not computed; the message lists the taus it was."""

    def __str__(self) -> str:  # KeyError's own __str__ would print the message in quotes
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class EvaluationResult:
    """ACC and ASR at each tau of ``taus`` (``acc[i]``, ``asr[i]`` at ``taus[i]``; NaN: undefined,
    an empty denominator), and the per-class accuracy at tau = 0 (``None`` for a class absent
    from the test set)."""

    taus: tuple[float, ...]
    acc: tuple[float, ...]
    asr: tuple[float, ...]
    per_class_acc: tuple[float | None, ...] | None = None

    def __post_init__(self) -> None:
        if not len(self.taus) == len(self.acc) == len(self.asr):
            raise ValueError(
                f"taus, acc and asr must be aligned; got lengths {len(self.taus)}, "
                f"{len(self.acc)}, {len(self.asr)}"
            )
        if len(set(self.taus)) != len(self.taus):
            raise ValueError(f"taus must be distinct; got {list(self.taus)}")

    @classmethod
    def build(
        cls,
        taus: Iterable[float],
        acc: Iterable[float],
        asr: Iterable[float],
        per_class_acc: Iterable[float | None] | None = None,
    ) -> EvaluationResult:
        """The result with every tau and rate as a Python float (numpy scalars included)."""
        per_class = (
            None
            if per_class_acc is None
            else tuple(None if value is None else float(value) for value in per_class_acc)
        )
        return cls(
            tuple(float(t) for t in taus),
            tuple(float(a) for a in acc),
            tuple(float(a) for a in asr),
            per_class,
        )

    def index_of(self, tau: float) -> int:
        """Position of ``tau`` in :attr:`taus` (exact float match).

        Raises:
            TauNotEvaluatedError: (a KeyError) ``tau`` is not one of :attr:`taus`; the message
                lists them.
        """
        for index, evaluated in enumerate(self.taus):
            if evaluated == tau:
                return index
        listed = ", ".join(repr(t) for t in self.taus) or "none"
        raise TauNotEvaluatedError(f"no tau {tau!r} was evaluated; recorded taus: {listed}")

    def rates_at(self, tau: float) -> tuple[float, float]:
        """``(ACC(tau), ASR(tau))``; TauNotEvaluatedError (a KeyError) if ``tau`` was not
        evaluated."""
        index = self.index_of(tau)
        return self.acc[index], self.asr[index]

    def acc_at(self, tau: float) -> float:
        """ACC(tau) (see :meth:`rates_at`)."""
        return self.acc[self.index_of(tau)]

    def asr_at(self, tau: float) -> float:
        """ASR(tau) (see :meth:`rates_at`)."""
        return self.asr[self.index_of(tau)]

    def to_dict(self) -> dict[str, Any]:
        """``{"acc": {str(tau): rate}, "asr": {...}, "per_class_acc": [...] or None}``: the shape of
        a metrics row's and of ``summary.json`` ``final``'s evaluation entries."""
        return {
            "acc": {str(tau): rate for tau, rate in zip(self.taus, self.acc, strict=True)},
            "asr": {str(tau): rate for tau, rate in zip(self.taus, self.asr, strict=True)},
            "per_class_acc": None if self.per_class_acc is None else list(self.per_class_acc),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EvaluationResult:
        """Read :meth:`to_dict`'s shape: a metrics row or ``summary["final"]`` (other keys, such as
        ``round`` or ``rejection_auc``, are ignored; ``per_class_acc`` may be absent). Taus come in
        the order of ``raw["acc"]``; a null rate reads as NaN (undefined).

        Raises:
            ValueError: ``acc`` / ``asr`` missing or not objects, keys that are not numbers or
                differ between the two, a rate that is not a number.
        """
        acc, asr = raw.get("acc"), raw.get("asr")
        if not isinstance(acc, Mapping) or not isinstance(asr, Mapping):
            raise ValueError(
                f"'acc' and 'asr' must be objects of tau -> rate; got {type(acc).__name__} and "
                f"{type(asr).__name__}"
            )
        taus = _parse_taus(acc, "acc")
        by_tau = dict(zip(_parse_taus(asr, "asr"), asr.values(), strict=True))
        if set(by_tau) != set(taus):
            raise ValueError(
                f"'acc' and 'asr' must have the same taus; got {sorted(acc)} and {sorted(asr)}"
            )
        per_class = raw.get("per_class_acc")
        if per_class is not None and not isinstance(per_class, list):
            raise ValueError(f"'per_class_acc' must be a list; got {type(per_class).__name__}")
        return cls.build(
            taus,
            [_rate(value, "acc") for value in acc.values()],
            [_rate(by_tau[tau], "asr") for tau in taus],
            per_class,
        )


def _parse_taus(rates: Mapping[str, Any], name: str) -> list[float]:
    """The float taus of ``rates``' keys (``"0.3"`` -> 0.3), distinct."""
    try:
        taus = [float(key) for key in rates]
    except (TypeError, ValueError):
        raise ValueError(f"'{name}' keys must be numbers (taus); got {list(rates)}") from None
    if len(set(taus)) != len(taus):
        raise ValueError(f"'{name}' has the same tau twice: {list(rates)}")
    return taus


def _rate(value: Any, name: str) -> float:
    """A JSON rate as a float; ``null`` -> NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"'{name}' rates must be numbers; got {value!r}")
    return float(value)
