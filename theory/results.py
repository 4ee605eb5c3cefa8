"""Typed results of one verified round: Theorem 1, Theorem 2 and Corollary 1 (THEORY.md section 10).

Each dataclass is one object of the JSON schema ``fliplab.theory.verify/1`` (also used inside
``fliplab.theory.deep/1``): ``to_dict`` gives that object with the schema's keys in the schema's
order, and ``from_dict`` reads it back, raising :class:`ResultSchemaError` that names a missing or
unknown key. ``from_dict(x.to_dict()) == x``. The written JSON has no inf/NaN
(:func:`theory.report.json_ready` maps them to ``null``), so a radius that was ``inf`` reads back as
``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any, TypeVar

from theory.report import Check

T = TypeVar("T")


class ResultSchemaError(ValueError):
    """A result object does not follow its schema (missing or unknown key)."""


def _checked_keys(cls: type, data: Mapping[str, Any], where: str) -> None:
    """Raise :class:`ResultSchemaError` unless ``data`` has every required field of ``cls`` and no
    other key.
    """
    if not isinstance(data, Mapping):
        raise ResultSchemaError(f"{where}: expected an object, got {type(data).__name__}")
    names = [f.name for f in fields(cls)]
    required = [f.name for f in fields(cls) if _required(f)]
    missing = [name for name in required if name not in data]
    unknown = sorted(set(data) - set(names))
    if missing or unknown:
        parts = ([f"missing key(s) {missing}"] if missing else []) + (
            [f"unknown key(s) {unknown}"] if unknown else []
        )
        raise ResultSchemaError(f"{where}: " + "; ".join(parts) + f" (expected {names})")


def _required(field: Field) -> bool:
    return field.default is MISSING and field.default_factory is MISSING


def _flat_to_dict(obj: Any) -> dict[str, Any]:
    """The fields of a dataclass of scalars, in declaration order."""
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _flat_from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """A dataclass of scalars from its :func:`_flat_to_dict` form (keys checked)."""
    _checked_keys(cls, data, cls.__name__)
    return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Theorem1Summary:
    """Theorem 1 (eq. 3) on one data set, as dataset averages: ``lb <= lb_jensen <= actual <= ub_r2
    <= ub`` (``ub_r2`` = mean of ``min(ub, R2)``), ``violations`` = samples whose per-sample
    ordering fails, ``n`` samples (:meth:`theory.theorem1.Theorem1Bounds.summary`)."""

    lb: float
    lb_jensen: float
    actual: float
    ub: float
    ub_r2: float
    violations: int
    n: int

    def to_dict(self) -> dict[str, Any]:
        return _flat_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Theorem1Summary:
        return _flat_from_dict(cls, data)


@dataclass(frozen=True)
class Theorem1Result:
    """Theorem 1 for one model pair ``(W, W')`` on the clean test set and the backdoor set (target
    labels).
    """

    clean: Theorem1Summary
    backdoor: Theorem1Summary

    def to_dict(self) -> dict[str, Any]:
        return {"clean": self.clean.to_dict(), "backdoor": self.backdoor.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Theorem1Result:
        _checked_keys(cls, data, cls.__name__)
        return cls(
            clean=Theorem1Summary.from_dict(data["clean"]),
            backdoor=Theorem1Summary.from_dict(data["backdoor"]),
        )


@dataclass(frozen=True)
class CertificateRadii:
    """Theorem 2's radii (THEORY.md 6.1-6.5): the paper-literal ``eps_P = f(0)/||grad f||_1``
    (``eps_paper``, ``eps_paper_status`` positive / vacuous / undefined, ``f0``, ``grad_f_l1``); the
    T2-A sign certificate ``eps_A`` (``premise_A``: T in argmin u_i(0) for all i, ``min_margin_A``);
    the T2-B Jensen certificate ``eps_B = LB^J_b(0)/||h||_1`` (``lbj0``, ``h_l1``); both under the
    paper's shared-delta reading (``*_shared_reading``, = the certificates for shared errors);
    whether the realised ``||delta||_inf`` lies inside each radius (``inside_A``, ``inside_B``).
    ``None``: no radius."""

    eps_paper: float | None
    eps_paper_status: str
    f0: float
    grad_f_l1: float
    eps_A: float | None
    premise_A: bool
    min_margin_A: float
    eps_B: float | None
    lbj0: float
    h_l1: float
    eps_A_shared_reading: float | None
    eps_B_shared_reading: float | None
    inside_A: bool
    inside_B: bool

    def to_dict(self) -> dict[str, Any]:
        return _flat_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CertificateRadii:
        return _flat_from_dict(cls, data)


@dataclass(frozen=True)
class CleanBound:
    """T2-C (THEORY.md 6.3): ``C_eps`` = C(||delta||_inf) >= UB_c, ``C_simple`` = UB_c(0) + eps
    eta_a kappa (``ub_c0`` = UB_c(0), ``kappa``), and ``eps_for_C``, the radius that keeps UB_c <=
    ``clean_budget``."""

    C_eps: float
    C_simple: float
    ub_c0: float
    kappa: float
    clean_budget: float
    eps_for_C: float | None

    def to_dict(self) -> dict[str, Any]:
        return _flat_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CleanBound:
        return _flat_from_dict(cls, data)


_THEOREM2_SCALARS = ("delta_inf", "model", "error_model", "eta_a", "frozen_rel_error")


@dataclass(frozen=True)
class Theorem2Result:
    """Theorem 2 on one hardening round in a frozen-residual model: the radii, the T2-C clean bound,
    the realised ``delta_inf`` = max ||delta||_inf, the ``model`` (F-hat, F0, ...) and
    ``error_model`` (shared / per-sample), its ``eta_a``, ``frozen_rel_error`` (the model at the
    realised delta vs the realised DeltaW) and, for the linear probe, ``deltaW_rel_error`` (closed
    form vs simulated; ``None`` where there is no simulated round to compare, and then absent from
    the JSON).

    The JSON object is flat: the radii's keys, the clean bound's keys, then the scalars."""

    radii: CertificateRadii
    clean: CleanBound
    delta_inf: float
    model: str
    error_model: str
    eta_a: float
    frozen_rel_error: float
    deltaW_rel_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            **self.radii.to_dict(),
            **self.clean.to_dict(),
            **{k: getattr(self, k) for k in _THEOREM2_SCALARS},
        }
        if self.deltaW_rel_error is not None:
            out["deltaW_rel_error"] = self.deltaW_rel_error
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Theorem2Result:
        if not isinstance(data, Mapping):
            raise ResultSchemaError(
                f"Theorem2Result: expected an object, got {type(data).__name__}"
            )
        parts = {
            "radii": [f.name for f in fields(CertificateRadii)],
            "clean": [f.name for f in fields(CleanBound)],
            "scalars": [*_THEOREM2_SCALARS, "deltaW_rel_error"],
        }
        unknown = sorted(set(data) - {name for names in parts.values() for name in names})
        missing = [name for name in _THEOREM2_SCALARS if name not in data]
        if unknown or missing:
            raise ResultSchemaError(
                f"Theorem2Result: missing key(s) {missing}, unknown key(s) {unknown}"
            )
        return cls(
            radii=CertificateRadii.from_dict({k: data[k] for k in parts["radii"] if k in data}),
            clean=CleanBound.from_dict({k: data[k] for k in parts["clean"] if k in data}),
            deltaW_rel_error=data.get("deltaW_rel_error"),
            **{k: data[k] for k in _THEOREM2_SCALARS},
        )


@dataclass(frozen=True)
class ModelCounts:
    """One model's counts at a threshold tau (THEORY.md 7.2, code semantics): ``n_acc`` clean
    samples accepted with their label, ``n_asr`` backdoor samples accepted as the target, rejected
    (max probability < tau) clean and backdoor samples."""

    n_acc: int
    n_asr: int
    rejected_clean: int
    rejected_backdoor: int

    def to_dict(self) -> dict[str, Any]:
        return _flat_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCounts:
        return _flat_from_dict(cls, data)


@dataclass(frozen=True)
class CertifiedCounts:
    """Counts certified by one probability bracket (Theorem 1's or Jensen's, THEORY.md 7.3):
    backdoor samples certified ``neutralised`` (of them ``newly_neutralised``: successful without
    defense), clean samples certified ``kept``, backdoor samples certified ``rejected``."""

    neutralised: int
    newly_neutralised: int
    kept: int
    rejected: int

    def to_dict(self) -> dict[str, Any]:
        return _flat_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CertifiedCounts:
        return _flat_from_dict(cls, data)


@dataclass(frozen=True)
class CorollaryRow:
    """Corollary 1 at one ``tau`` for a pair (no defense, defense): each model's counts, the actual
    neutralised and newly neutralised backdoor samples, the certified counts of both brackets, the
    paper's rejection changes ``R' - R`` (keys ``backdoor``, ``clean``), ``sound`` (certified <=
    actual), and, when a frozen model and ``delta_inf`` are given, the robust Jensen count at
    ``delta_inf`` (else ``None``, absent from the JSON)."""

    tau: float
    no_defense: ModelCounts
    defense: ModelCounts
    neutralised_actual: int
    newly_neutralised_actual: int
    certified_t1: CertifiedCounts
    certified_jensen: CertifiedCounts
    paper_rejections: dict[str, int]
    sound: bool
    robust_jensen_at_delta_inf: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "tau": self.tau,
            "no_defense": self.no_defense.to_dict(),
            "defense": self.defense.to_dict(),
            "neutralised_actual": self.neutralised_actual,
            "newly_neutralised_actual": self.newly_neutralised_actual,
            "certified_t1": self.certified_t1.to_dict(),
            "certified_jensen": self.certified_jensen.to_dict(),
            "paper_rejections": dict(self.paper_rejections),
            "sound": self.sound,
        }
        if self.robust_jensen_at_delta_inf is not None:
            out["robust_jensen_at_delta_inf"] = self.robust_jensen_at_delta_inf
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CorollaryRow:
        _checked_keys(cls, data, cls.__name__)
        return cls(
            tau=data["tau"],
            no_defense=ModelCounts.from_dict(data["no_defense"]),
            defense=ModelCounts.from_dict(data["defense"]),
            neutralised_actual=data["neutralised_actual"],
            newly_neutralised_actual=data["newly_neutralised_actual"],
            certified_t1=CertifiedCounts.from_dict(data["certified_t1"]),
            certified_jensen=CertifiedCounts.from_dict(data["certified_jensen"]),
            paper_rejections=dict(data["paper_rejections"]),
            sound=data["sound"],
            robust_jensen_at_delta_inf=data.get("robust_jensen_at_delta_inf"),
        )


@dataclass(frozen=True)
class ProbeResult:
    """The one-round probe of ``theory.verify``: Theorem 1 on the probe pair, ``deltaW_rel_error``
    (closed form vs simulated), whether the closed form applies, the probed ``round`` and its start
    ``W^{nd}_{start_round}``, whether the attacker ``poisoned`` in it, and its ACC/ASR ``metrics``
    (:func:`theory.analysis.threshold_metrics` at the metrics tau)."""

    theorem1: Theorem1Result
    deltaW_rel_error: float
    closed_form_applies: bool
    round: int
    start_round: int
    poisoned: bool
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "theorem1": self.theorem1.to_dict(),
            "deltaW_rel_error": self.deltaW_rel_error,
            "closed_form_applies": self.closed_form_applies,
            "round": self.round,
            "start_round": self.start_round,
            "poisoned": self.poisoned,
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeResult:
        _checked_keys(cls, data, cls.__name__)
        return cls(
            theorem1=Theorem1Result.from_dict(data["theorem1"]),
            **{f.name: data[f.name] for f in fields(cls) if f.name != "theorem1"},
        )


@dataclass(frozen=True)
class RoundResult:
    """Everything ``theory.verify`` checks at round R: Theorem 1 on the twin pair, the probe,
    Theorem 2 and Corollary 1 (one row per tau) on the probe pair, the twin pair's ``metrics``, and
    the checks."""

    theorem1: Theorem1Result
    probe: ProbeResult
    theorem2: Theorem2Result
    corollary1: list[CorollaryRow]
    metrics: dict[str, Any]
    checks: list[Check]

    def to_dict(self) -> dict[str, Any]:
        return {
            "theorem1": self.theorem1.to_dict(),
            "probe": self.probe.to_dict(),
            "theorem2": self.theorem2.to_dict(),
            "corollary1": [row.to_dict() for row in self.corollary1],
            "metrics": self.metrics,
            "checks": [check.to_json() for check in self.checks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundResult:
        """From a ``theory.verify --json`` payload (other top-level keys are ignored)."""
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise ResultSchemaError(f"RoundResult: missing key(s) {missing}")
        return cls(
            theorem1=Theorem1Result.from_dict(data["theorem1"]),
            probe=ProbeResult.from_dict(data["probe"]),
            theorem2=Theorem2Result.from_dict(data["theorem2"]),
            corollary1=[CorollaryRow.from_dict(row) for row in data["corollary1"]],
            metrics=dict(data["metrics"]),
            checks=[Check.from_json(c) for c in data["checks"]],
        )
