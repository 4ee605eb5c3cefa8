"""Theorems 1-2 and Corollary 1 evaluated on one realised round of the linear engine (THEORY.md
section 10). Pure functions of arrays: they return the typed results of :mod:`theory.results` and
:class:`theory.report.Check` records, and never run the engine (that is :mod:`theory.verify`'s job).

* Theorem 1 is checked on any model pair: the twin pair ``(W^{nd}_R, W^{d}_R)`` and the probe pair.
* Theorem 2 and Corollary 1 concern one round from a common start (the probe), in the frozen model
  ``F-hat`` by default, with per-sample trigger errors unless every ``\\delta_j`` is identical
  (6.5).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from theory.corollary1 import (
    CorollaryCounts,
    code_semantics_counts,
    corollary_counts,
    pair_probabilities,
    robust_target_upper,
)
from theory.frozen import (
    FrozenResidualModel,
    HardeningRound,
    deltaW_closed_form,
    frozen_model,
    relative_error,
    shared_delta,
)
from theory.report import Check, fmt
from theory.results import (
    CertificateRadii,
    CertifiedCounts,
    CleanBound,
    CorollaryRow,
    ModelCounts,
    Theorem1Result,
    Theorem1Summary,
    Theorem2Result,
)
from theory.theorem1 import LossChangeBounds, theorem1_bounds
from theory.theorem2 import CleanBound as CleanBoundCertificate
from theory.theorem2 import (
    JensenCertificate,
    PaperRadius,
    SignCertificate,
    clean_bound,
    jensen_certificate,
    paper_radius,
    sign_certificate,
)

DELTA_W_RTOL = 1e-10  # closed form vs simulated DeltaW (must-hold when the closed form applies)
SOUNDNESS_RTOL = 1e-9  # slack for float64 round-off in the realised-run soundness checks
PAPER_STATUS_NOTE = {"vacuous": " (<= 0: certifies nothing)", "undefined": " (0/0)", "positive": ""}


@dataclass(frozen=True)
class EvaluationSets:
    """Clean test set ``(X_clean, y_clean)`` and backdoor set ``X_backdoor`` (all scored with
    ``target``); rows include the bias coordinate (last) when the models have one."""

    X_clean: np.ndarray
    y_clean: np.ndarray
    X_backdoor: np.ndarray
    target: int


def theorem1_pair(
    W: np.ndarray, W_prime: np.ndarray, sets: EvaluationSets, label: str
) -> tuple[Theorem1Result, list[Check]]:
    """Theorem 1 (dataset averages + per-sample ordering) on clean and backdoor data for one
    pair.
    """
    summaries, checks = {}, []
    targets = np.full(len(sets.X_backdoor), sets.target)
    for name, X, y in (
        ("clean", sets.X_clean, sets.y_clean),
        ("backdoor", sets.X_backdoor, targets),
    ):
        summary = Theorem1Summary.from_dict(theorem1_bounds(W, W_prime, X, y).summary())
        summaries[name] = summary
        checks.append(
            Check(
                name=f"Thm 1 {label} {name}",
                bound=summary.lb,
                actual=summary.actual,
                passed=summary.violations == 0,
                must_hold=True,
                detail=(
                    f"LB={fmt(summary.lb)} <= LB^J={fmt(summary.lb_jensen)} <= "
                    f"dL={fmt(summary.actual)} <= min(UB,R2)={fmt(summary.ub_r2)} <= "
                    f"UB={fmt(summary.ub)}  (n={summary.n}, per-sample "
                    f"violations={summary.violations})"
                ),
            )
        )
    result = Theorem1Result(clean=summaries["clean"], backdoor=summaries["backdoor"])
    lb_b = result.backdoor.lb
    checks.append(
        Check(
            name=f"Thm 1 {label} paper goal LB_b >= 0",
            bound=0.0,
            actual=lb_b,
            passed=lb_b >= 0,
            must_hold=False,
            detail=(
                f"LB_b={fmt(lb_b)}: "
                + (
                    "= 0, only the sign condition T in argmin u holds"
                    if lb_b == 0
                    else "< 0, literal bound certifies nothing"
                )
                + "; F1: LB <= 0 always"
            ),
        )
    )
    return result, checks


@dataclass(frozen=True)
class ModelPair:
    """The compared models: ``W_nodef`` (= ``W``, no defense) and ``W_def`` (= ``W'``), both (c,
    D).
    """

    W_nodef: np.ndarray
    W_def: np.ndarray


@dataclass(frozen=True)
class ProbeInputs:
    """One hardening round from a common start (fields of ``linear_fl.probe.Probe``)."""

    rnd: HardeningRound
    W_nodef: np.ndarray
    W_def: np.ndarray
    deltaW_simulated: np.ndarray
    closed_form_applies: bool


@dataclass(frozen=True)
class Theorem2Round:
    """Theorem-2 results of one probe: the typed ``result`` (its ``to_dict`` is the JSON object),
    the ``checks``, and the frozen ``model``, error model (``per_sample``) and ``support`` reused by
    the corollary's robust counts."""

    result: Theorem2Result
    checks: list[Check]
    model: FrozenResidualModel
    per_sample: bool
    support: np.ndarray


def theorem2_round(
    probe: ProbeInputs, sets: EvaluationSets, model_kind: str = "F-hat", clean_budget: float = 0.05
) -> Theorem2Round:
    """Paper-literal ``\\varepsilon_P`` and T2-A/B/C on the probe (THEORY.md 6.1-6.6), with
    realised-run soundness checks (rigorous with F-hat when the closed form applies)."""
    rnd = probe.rnd
    closed = deltaW_closed_form(rnd)
    rel_sim = relative_error(closed, probe.deltaW_simulated)
    check = Check(
        "DeltaW closed form vs simulated",
        DELTA_W_RTOL,
        rel_sim,
        passed=rel_sim < DELTA_W_RTOL,
        must_hold=probe.closed_form_applies,
        detail=f"relative error {fmt(rel_sim, 2)}"
        + (
            f" (< {DELTA_W_RTOL:g} required)"
            if probe.closed_form_applies
            else ": closed form does not apply (E>1 or mini-batches)"
        ),
    )
    pair = ModelPair(probe.W_nodef, probe.W_def)
    rigorous = model_kind == "F-hat" and probe.closed_form_applies
    t2 = frozen_certificates(
        frozen_model(rnd, model_kind), pair, rnd.delta, sets, rigorous, clean_budget
    )
    return Theorem2Round(
        result=replace(t2.result, deltaW_rel_error=rel_sim),
        checks=[check] + t2.checks,
        model=t2.model,
        per_sample=t2.per_sample,
        support=t2.support,
    )


def frozen_certificates(
    model: FrozenResidualModel,
    pair: ModelPair,
    delta_rows: np.ndarray,
    sets: EvaluationSets,
    rigorous: bool,
    clean_budget: float = 0.05,
) -> Theorem2Round:
    """Theorem 2 for any frozen-residual ``model`` of ``\\Delta W = W' - W`` (THEORY.md 5-6): the
    frozen model at the realised errors ``delta_rows`` (one row per hardening sample) reproduces
    ``\\Delta W``; paper-literal ``\\varepsilon_P``; T2-A/B/C radii against
    ``\\|\\delta\\|_\\infty``; soundness on the realised pair. ``rigorous`` makes the exactness
    checks must-hold (F-hat, closed form applies). The bias coordinate (last) is outside the error's
    support (6.6); shared vs per-sample errors (6.5) are detected from ``delta_rows``."""
    support = np.ones(model.base.shape[1], dtype=bool)
    support[-1] = False  # the bias coordinate is never stamped (6.6)
    common = shared_delta(delta_rows)
    per_sample = common is None
    delta_used = delta_rows if common is None else common
    delta_inf = float(
        max(delta_rows.max(), -delta_rows.min())
    )  # = max |delta|, without an |delta| copy
    rel_frozen = relative_error(model.deltaW(delta_used), pair.W_def - pair.W_nodef)
    checks = [_frozen_exactness_check(model.name, rel_frozen, rigorous)]
    radii, radius_checks, jensen = _radii(model, pair, sets, support, per_sample, delta_inf)
    checks += radius_checks
    sound_checks, clean = _soundness(
        model,
        pair,
        sets,
        support,
        per_sample,
        delta_inf,
        delta_used,
        jensen,
        (radii.inside_A, radii.inside_B),
        rigorous,
        clean_budget,
    )
    checks += sound_checks
    result = Theorem2Result(
        radii=radii,
        clean=clean,
        delta_inf=delta_inf,
        model=model.name,
        error_model="per-sample" if per_sample else "shared",
        eta_a=model.eta_a,
        frozen_rel_error=rel_frozen,
    )
    return Theorem2Round(
        result=result, checks=checks, model=model, per_sample=per_sample, support=support
    )


def _frozen_exactness_check(name: str, rel_frozen: float, rigorous: bool) -> Check:
    """The check that the frozen model at the realised errors reproduces ``\\Delta W``."""
    return Check(
        f"{name} model at realised delta reproduces DeltaW",
        DELTA_W_RTOL,
        rel_frozen,
        passed=rel_frozen < DELTA_W_RTOL,
        must_hold=rigorous,
        detail=f"relative error {fmt(rel_frozen, 2)}"
        + ("" if rigorous else " (approximate model)"),
    )


def _radii(
    model: FrozenResidualModel,
    pair: ModelPair,
    sets: EvaluationSets,
    support: np.ndarray,
    per_sample: bool,
    delta_inf: float,
) -> tuple[CertificateRadii, list[Check], JensenCertificate]:
    """Paper-literal ``\\varepsilon_P`` (6.1-6.2) and the T2-A / T2-B radii (6.3, 6.5) against
    ``delta_inf``.
    """
    Xb, T = sets.X_backdoor, sets.target
    paper = paper_radius(model, Xb, T, support)
    checks = _paper_radius_checks(paper)
    cert_a = sign_certificate(model, Xb, T, support, per_sample)
    cert_b = jensen_certificate(model, pair.W_nodef, Xb, T, support, per_sample)
    if per_sample:  # the paper's shared-delta reading, for comparison (not sound for these errors)
        shared_a = sign_certificate(model, Xb, T, support, per_sample=False).eps
        shared_b = jensen_certificate(model, pair.W_nodef, Xb, T, support, per_sample=False).eps
    else:
        shared_a, shared_b = cert_a.eps, cert_b.eps
    inside_a = cert_a.eps is not None and delta_inf <= cert_a.eps
    inside_b = cert_b.eps is not None and delta_inf <= cert_b.eps
    checks.append(_sign_certificate_check(cert_a, delta_inf, inside_a, per_sample, shared_a))
    checks.append(_jensen_certificate_check(cert_b, delta_inf, inside_b, per_sample, shared_b))
    result = CertificateRadii(
        eps_paper=paper.eps,
        eps_paper_status=paper.status,
        f0=paper.f0,
        grad_f_l1=paper.grad_l1,
        eps_A=cert_a.eps,
        premise_A=cert_a.premise,
        min_margin_A=cert_a.min_margin,
        eps_B=cert_b.eps,
        lbj0=cert_b.lbj0,
        h_l1=cert_b.h_l1,
        eps_A_shared_reading=shared_a,
        eps_B_shared_reading=shared_b,
        inside_A=inside_a,
        inside_B=inside_b,
    )
    return result, checks, cert_b


def _paper_radius_checks(paper: PaperRadius) -> list[Check]:
    """The checks on the paper-literal radius: ``f(0) <= 0`` and the sign of ``\\varepsilon_P``."""
    return [
        Check(
            "Thm 2 paper f(0) = LB_b(0) <= 0",
            0.0,
            paper.f0,
            passed=paper.f0 <= 0,
            must_hold=True,
            detail=f"f(0)={fmt(paper.f0)}, ||grad f||_1={fmt(paper.grad_l1)}",
        ),
        Check(
            "Thm 2 paper eps_P = f(0)/||grad f||_1",
            None,
            paper.eps,
            passed=paper.status == "positive",
            must_hold=False,
            detail=f"eps_P={fmt(paper.eps)}: {paper.status}" + PAPER_STATUS_NOTE[paper.status],
        ),
    ]


def _sign_certificate_check(
    cert_a: SignCertificate,
    delta_inf: float,
    inside_a: bool,
    per_sample: bool,
    shared_a: float | None,
) -> Check:
    """The check comparing the T2-A sign-certificate radius with ``delta_inf``."""
    ball = "per-sample ||delta_j||_inf" if per_sample else "shared ||delta||_inf"
    return Check(
        "T2-A sign certificate eps*_A",
        cert_a.eps,
        delta_inf,
        passed=inside_a,
        must_hold=False,
        detail=(
            f"premise (T in argmin u_i(0) for all i) {'holds' if cert_a.premise else 'fails'} (min "
            f"margin {fmt(cert_a.min_margin)}); eps*_A={fmt(cert_a.eps)} vs "
            f"{ball}={fmt(delta_inf)}: {'inside' if inside_a else 'not certified'}"
            + (f" [shared-delta reading: {fmt(shared_a)}]" if per_sample else "")
        ),
    )


def _jensen_certificate_check(
    cert_b: JensenCertificate,
    delta_inf: float,
    inside_b: bool,
    per_sample: bool,
    shared_b: float | None,
) -> Check:
    """The check comparing the T2-B Jensen-certificate radius with ``delta_inf``."""
    return Check(
        "T2-B Jensen certificate eps*_B",
        cert_b.eps,
        delta_inf,
        passed=inside_b,
        must_hold=False,
        detail=(
            f"LB^J_b(0)={fmt(cert_b.lbj0)}, ||h||_1={fmt(cert_b.h_l1)}, eps*_B={fmt(cert_b.eps)} "
            f"vs {fmt(delta_inf)}: {'inside' if inside_b else 'not certified'}"
            + (f" [shared-delta reading: {fmt(shared_b)}]" if per_sample else "")
        ),
    )


def _soundness(
    model: FrozenResidualModel,
    pair: ModelPair,
    sets: EvaluationSets,
    support: np.ndarray,
    per_sample: bool,
    delta_inf: float,
    delta_used: np.ndarray,
    cert_b: JensenCertificate,
    inside: tuple[bool, bool],
    rigorous: bool,
    clean_budget: float,
) -> tuple[list[Check], CleanBound]:
    """Realised-run soundness of T2-A / T2-B (the realised error lies in the ball of radius
    ``delta_inf``) and the T2-C clean bound ``dL_c <= UB_c <= C(eps) <= UB_c(0) + eps eta_a kappa``
    (THEORY.md 6.3)."""
    Xb, T = sets.X_backdoor, sets.target
    probe_b = theorem1_bounds(pair.W_nodef, pair.W_def, Xb, np.full(len(Xb), T))
    probe_c = theorem1_bounds(pair.W_nodef, pair.W_def, sets.X_clean, sets.y_clean)
    checks = _backdoor_soundness_checks(probe_b, delta_used, cert_b, inside, rigorous)
    bound_c = clean_bound(model, sets.X_clean, sets.y_clean, support, per_sample)
    clean_checks, clean = _clean_bound_checks(bound_c, probe_c, delta_inf, rigorous, clean_budget)
    return checks + clean_checks, clean


def _backdoor_soundness_checks(
    probe_b: LossChangeBounds,
    delta_used: np.ndarray,
    cert_b: JensenCertificate,
    inside: tuple[bool, bool],
    rigorous: bool,
) -> list[Check]:
    """T2-A / T2-B soundness and the T2-B affine law on the realised backdoor-set bounds."""
    inside_a, inside_b = inside
    tol_b = SOUNDNESS_RTOL * float(probe_b.scale.max())
    max_abs_lb = float(np.abs(probe_b.lb).max())
    checks = [
        Check(
            "T2-A soundness: delta inside eps*_A => all lb_b,i = 0",
            0.0,
            max_abs_lb,
            passed=(not inside_a) or max_abs_lb <= tol_b,
            must_hold=inside_a and rigorous,
            detail=(
                f"max_i |lb_b,i| = {fmt(max_abs_lb)}"
                if inside_a
                else "not applicable (delta outside the radius)"
            ),
        )
    ]
    lbj_realised = cert_b.lower_bound_at(delta_used)
    lbj_direct = float(probe_b.lb_jensen.mean())
    affine_ok = abs(lbj_realised - lbj_direct) <= SOUNDNESS_RTOL * (1 + abs(lbj_direct)) + tol_b
    checks.append(
        Check(
            "T2-B affine law at realised delta",
            lbj_realised,
            lbj_direct,
            passed=affine_ok,
            must_hold=rigorous,
            detail=f"LB^J_b(0)+<h,delta>={fmt(lbj_realised)} vs direct {fmt(lbj_direct)}",
        )
    )
    dl_b = float(probe_b.actual.mean())
    checks.append(
        Check(
            "T2-B soundness: delta inside eps*_B => dL_b >= LB^J_b >= 0",
            0.0,
            dl_b,
            passed=(not inside_b) or (dl_b >= lbj_direct - tol_b and lbj_direct >= -tol_b),
            must_hold=inside_b and rigorous,
            detail=(
                f"dL_b={fmt(dl_b)} >= LB^J_b={fmt(lbj_direct)} >= 0"
                if inside_b
                else "not applicable (delta outside the radius)"
            ),
        )
    )
    return checks


def _clean_bound_checks(
    bound_c: CleanBoundCertificate,
    probe_c: LossChangeBounds,
    delta_inf: float,
    rigorous: bool,
    clean_budget: float,
) -> tuple[list[Check], CleanBound]:
    """The T2-C clean-bound chain at ``eps = delta_inf`` and the radius for ``clean_budget``."""
    c_eps, c_simple = bound_c.bound(delta_inf), bound_c.simple_bound(delta_inf)
    ub_c, dl_c = float(probe_c.ub.mean()), float(probe_c.actual.mean())
    tol_c = SOUNDNESS_RTOL * float(probe_c.scale.max())
    chain_ok = dl_c <= ub_c + tol_c and ub_c <= c_eps + tol_c and c_eps <= c_simple + tol_c
    eps_for_c = bound_c.radius_for(clean_budget)
    checks = [
        Check(
            "T2-C clean bound at eps=||delta||_inf",
            c_eps,
            ub_c,
            passed=chain_ok,
            must_hold=rigorous,
            detail=(
                f"dL_c={fmt(dl_c)} <= UB_c={fmt(ub_c)} <= C(eps)={fmt(c_eps)} <= "
                f"UB_c(0)+eps*eta_a*kappa={fmt(c_simple)}"
            ),
        ),
        Check(
            f"T2-C radius for UB_c <= C={clean_budget:g}",
            eps_for_c,
            delta_inf,
            passed=eps_for_c is not None and delta_inf <= eps_for_c,
            must_hold=False,
            detail=(
                f"UB_c(0)={fmt(bound_c.ub0)}, kappa={fmt(bound_c.kappa)}, eps={fmt(eps_for_c)} vs "
                f"{fmt(delta_inf)}"
            ),
        ),
    ]
    clean = CleanBound(
        C_eps=c_eps,
        C_simple=c_simple,
        ub_c0=bound_c.ub0,
        kappa=bound_c.kappa,
        clean_budget=clean_budget,
        eps_for_C=eps_for_c,
    )
    return checks, clean


def corollary_round(
    probe: ProbeInputs | ModelPair,
    sets: EvaluationSets,
    taus: list[float],
    model: FrozenResidualModel | None = None,
    per_sample: bool = False,
    support: np.ndarray | None = None,
    delta_inf: float | None = None,
) -> tuple[list[CorollaryRow], list[Check]]:
    """Corollary 1 on the probe pair for each ``tau``: actual counts (code semantics), certified
    counts (Theorem-1 and Jensen brackets), soundness, and robust Jensen counts at ``delta_inf``."""
    rows, checks = [], []
    robust_upper = None
    if (
        model is not None and delta_inf is not None
    ):  # U_T^rob does not depend on tau: compute it once
        robust_upper = robust_target_upper(
            model,
            probe.W_nodef,
            sets.X_backdoor,
            sets.target,
            delta_inf,
            "jensen",
            per_sample,
            support,
        )
    pair = pair_probabilities(probe.W_nodef, probe.W_def, sets.X_clean, sets.X_backdoor)
    for tau in taus:
        counts = corollary_counts(
            probe.W_nodef,
            probe.W_def,
            sets.X_clean,
            sets.y_clean,
            sets.X_backdoor,
            sets.target,
            tau,
            pair,
        )
        rows.append(_corollary_row(tau, counts, robust_upper))
        checks.append(_corollary_check(tau, counts))
    return rows, checks


def _corollary_row(
    tau: float, counts: CorollaryCounts, robust_upper: np.ndarray | None
) -> CorollaryRow:
    """One Corollary-1 row at ``tau``, with the robust Jensen count when ``robust_upper`` is set."""
    return CorollaryRow(
        tau=tau,
        no_defense=ModelCounts.from_dict(counts.no_defense),
        defense=ModelCounts.from_dict(counts.defense),
        neutralised_actual=counts.neutralised_actual,
        newly_neutralised_actual=counts.newly_neutralised_actual,
        certified_t1=CertifiedCounts.from_dict(counts.certified["theorem1"]),
        certified_jensen=CertifiedCounts.from_dict(counts.certified["jensen"]),
        paper_rejections=counts.paper_rejections,
        sound=counts.sound,
        robust_jensen_at_delta_inf=None
        if robust_upper is None
        else int(np.sum(robust_upper < tau)),
    )


def _corollary_check(tau: float, counts: CorollaryCounts) -> Check:
    """The Corollary-1 soundness check at ``tau``: certified counts never exceed actual ones."""
    t1, jn = counts.certified["theorem1"], counts.certified["jensen"]
    return Check(
        f"Cor 1 tau={tau:g} certified <= actual",
        float(jn["newly_neutralised"]),
        float(counts.newly_neutralised_actual),
        passed=counts.sound,
        must_hold=True,
        detail=(
            f"N^asr {counts.no_defense['n_asr']} -> {counts.defense['n_asr']} (neutralised "
            f"{counts.neutralised_actual}, newly {counts.newly_neutralised_actual}); certified "
            f"newly neutralised T1={t1['newly_neutralised']} Jensen={jn['newly_neutralised']}; "
            f"kept N^acc={counts.defense['n_acc']} certified T1={t1['kept']} Jensen={jn['kept']}; "
            f"rejected backdoor {counts.defense['rejected_backdoor']} certified "
            f"T1={t1['rejected']} Jensen={jn['rejected']}; "
            f"R'_b-R_b={counts.paper_rejections['backdoor']}"
        ),
    )


def threshold_metrics(
    W_nodef: np.ndarray,
    W_def: np.ndarray,
    sets: EvaluationSets,
    taus: list[float],
    metrics_tau: float,
) -> dict[str, Any]:
    """ACC/ASR and Table-4 counts without and with defense at each ``tau`` (fldata.metrics)."""
    from scipy.special import softmax

    probs = {
        name: (softmax(sets.X_clean @ W.T, axis=1), softmax(sets.X_backdoor @ W.T, axis=1))
        for name, W in (("no_defense", W_nodef), ("defense", W_def))
    }
    n_clean, n_back = len(sets.y_clean), len(sets.X_backdoor)
    per_tau = []
    for tau in sorted(set(taus) | {metrics_tau}):
        entry: dict[str, Any] = {"tau": tau}
        for name, (p_c, p_b) in probs.items():
            counts = code_semantics_counts(p_c, sets.y_clean, p_b, sets.target, tau)
            entry[name] = {
                "acc": counts["n_acc"] / n_clean,
                "asr": counts["n_asr"] / n_back,
                **counts,
            }
        per_tau.append(entry)
    chosen = next(e for e in per_tau if e["tau"] == metrics_tau)
    return {
        "no_defense": {k: chosen["no_defense"][k] for k in ("acc", "asr")},
        "defense": {k: chosen["defense"][k] for k in ("acc", "asr")},
        "tau": metrics_tau,
        "per_tau": per_tau,
        "clean_total": n_clean,
        "backdoor_total": n_back,
    }
