"""Check records, console lines and the JSON file of ``python -m theory.verify``.

A :class:`Check` is one "bound vs actual" line. ``must_hold`` checks print PASS/FAIL and decide
the exit status; information lines (e.g. "eps_P vacuous", "delta outside the radius") print INFO.
JSON schema: ``fliplab.theory.verify/1`` (keys documented in :mod:`theory.verify_report`,
typed in :mod:`theory.results`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fldata import atomic

SCHEMA = "fliplab.theory.verify/1"


@dataclass(frozen=True)
class Check:
    """One verified statement: ``name``, the bound and the actual value it is compared with,
    whether the statement holds (``passed``), and whether it must hold (else it is information)."""

    name: str
    bound: float | None
    actual: float | None
    passed: bool
    must_hold: bool
    detail: str = ""

    @property
    def mark(self) -> str:
        if not self.must_hold:
            return "INFO"
        return "PASS" if self.passed else "FAIL"

    def line(self) -> str:
        """``[PASS] name: detail`` (the detail carries the numbers)."""
        return f"  [{self.mark}] {self.name}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bound": finite_or_none(self.bound),
            "actual": finite_or_none(self.actual),
            "pass": bool(self.passed),
            "must_hold": bool(self.must_hold),
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Check:
        """The inverse of :meth:`to_json` (a non-finite bound or actual reads back as ``None``)."""
        return cls(
            name=data["name"],
            bound=data["bound"],
            actual=data["actual"],
            passed=data["pass"],
            must_hold=data["must_hold"],
            detail=data.get("detail", ""),
        )


def finite_or_none(value: float | None) -> float | None:
    """JSON has no inf/NaN: map them (and None) to null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def fmt(value: float | None, digits: int = 4) -> str:
    """Compact scientific formatting; ``None`` prints as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}e}"


def failed_must_hold(checks: Iterable[Check]) -> list[Check]:
    """The must-hold checks that failed (non-empty means a non-zero exit status)."""
    return [c for c in checks if c.must_hold and not c.passed]


def json_ready(obj: Any) -> Any:
    """Recursively convert numpy scalars/arrays and non-finite floats to JSON-safe values."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, Check):
        return obj.to_json()
    if callable(getattr(obj, "to_dict", None)):  # the typed results of theory.results
        return json_ready(obj.to_dict())
    if hasattr(obj, "tolist"):
        return json_ready(obj.tolist())
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return finite_or_none(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_report_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a report ``payload`` as strict JSON (:func:`json_ready` values, indent 1, key order
    kept) to ``path`` atomically."""
    # Not re-exported under fldata's name: its defaults (indent 2, sorted keys) are not this format.
    return atomic.write_json_atomic(
        path, json_ready(payload), indent=1, sort_keys=False, allow_nan=False
    )


def theorem1_line(label: str, summary: dict[str, Any]) -> str:
    """``LB <= LB^J <= dL <= min(UB,R2) <= UB`` averages of one set."""
    return (
        f"{label} (n={summary['n']}): LB={fmt(summary['lb'])} <= LB^J={fmt(summary['lb_jensen'])} "
        f"<= dL={fmt(summary['actual'])} <= min(UB,R2)={fmt(summary['ub_r2'])} <= "
        f"UB={fmt(summary['ub'])}; per-sample ordering violations={summary['violations']}"
    )


def print_section(title: str, lines: Iterable[str], echo: Callable[[str], None] = print) -> None:
    """Print a titled block of lines."""
    echo(title)
    for line in lines:
        echo(line)
