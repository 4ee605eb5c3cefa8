"""The protocol of ``python -m theory.verify``: which runs, which rounds, which analyses (THEORY.md
section 10).

Pre-train (cached), run the twin process for ``R`` attack rounds without and with the FLIP defense,
then

1. Theorem 1 on the realised twin pair ``(W^{nd}_R, W^{d}_R)`` and on the probe pair;
2. Theorem 2 (paper-literal ``eps_P``, corrected T2-A/B/C) on the one-round probe: round R+1 from
   the common start ``W^{nd}_R``, with and without hardening (frozen model ``F-hat`` by default);
3. Corollary 1 counts (actual and certified) on the probe pair for each tau;
4. ACC/ASR without and with defense on the twin pair (Table 3 analogue) and the Table 4 counts
   ``N^{acc}``, ``N^{asr}`` with rejected counts.

Single-shot protocol: the malicious client poisons in round R (``attack_round`` defaults to
``--round``; ``--config attack_round=K`` overrides it) with model replacement (``scale`` default
``1/p_M``, ``malicious_local_epochs`` default 10, see ``linear_fl.config``), so the twin pair after
R rounds is the pair right after the poisoning: the no-defense ASR spike. The FLIP twin cannot undo
it in that same round (its round-R inversion ran on the still clean ``W^{d}_{R-1}``), so its ASR is
also high there. The probe, round R+1 from the backdoored ``W^{nd}_R``, is the first round in which
the benign client inverts the implanted backdoor and hardens against it: Theorems 1-2 and Corollary
1 are checked there, and for single-shot the Table 3 analogue is reported for the probe pair as well
(no defense vs FLIP after round R+1 from the common ``W^{nd}_R``). The malicious client does not
poison in the probe round (it trains on clean data); the closed forms hold for any oblivious
malicious update (THEORY.md sections 2, 10). Probing the poisoning round itself (from
``W^{nd}_{R-1}``) would invert a trigger from a model without a backdoor and certify nothing.

The no-defense twin runs in a background thread (bitwise the sequential result) and the per-round
ACC/ASR of the twins is not computed (not reported). With ``all_rounds`` every round 1..R gets a
probe and its analysis (the series); a check then requires every must-hold check of every round to
pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from theory.analysis import (
    EvaluationSets,
    ProbeInputs,
    corollary_round,
    theorem1_pair,
    theorem2_round,
    threshold_metrics,
)
from theory.frozen import HardeningRound
from theory.report import Check, failed_must_hold
from theory.results import ProbeResult, RoundResult

if TYPE_CHECKING:
    from linear_fl.config import LinearFLConfig
    from linear_fl.probe import Probe
    from linear_fl.twin import Setup, TwinResult

DEFAULT_TAUS = (0.0, 0.4, 0.6, 0.8)
# Threshold of the Table 3 analogue: the released config's comment says 0.4 for the continuous
# attack; single-shot uses 0 (THEORY.md 7.4).
DEFAULT_METRICS_TAU = {"continuous": 0.4, "single-shot": 0.0}


@dataclass(frozen=True)
class AnalysisSettings:
    """What each round's analysis needs: Corollary 1's ``taus``, the ``metrics_tau`` of the Table 3
    analogue, the frozen-residual ``model_kind`` and T2-C's ``clean_budget``."""

    taus: list[float]
    metrics_tau: float
    model_kind: str = "F-hat"
    clean_budget: float = 0.05


@dataclass
class Verification:
    """One run of the protocol: the engine's ``setup`` and ``twin`` run, the analysed round ``R``
    (``result``) with its raw ``linear_fl.probe.Probe``, and with ``all_rounds`` the ``series``
    ``[(r, result_r)]`` for r = 1..R plus the series check (already in ``checks``)."""

    setup: Setup
    twin: TwinResult
    round: int
    result: RoundResult
    raw_probe: Probe
    series: list[tuple[int, RoundResult]] | None
    checks: list[Check]


def probe_inputs(probe: Probe) -> ProbeInputs:
    """Adapt a ``linear_fl.probe.Probe`` to the theory's :class:`ProbeInputs`."""
    return ProbeInputs(
        rnd=HardeningRound.from_probe(probe),
        W_nodef=np.asarray(probe.W_nodef, dtype=np.float64),
        W_def=np.asarray(probe.W_def, dtype=np.float64),
        deltaW_simulated=np.asarray(probe.deltaW_simulated, dtype=np.float64),
        closed_form_applies=bool(probe.closed_form_applies),
    )


def analyse_round(
    setup: Setup,
    W_nodef: np.ndarray,
    W_def: np.ndarray,
    probe: ProbeInputs,
    taus: list[float],
    metrics_tau: float,
    model_kind: str,
    clean_budget: float,
    probe_round: int = 0,
    poisoned: bool = False,
) -> RoundResult:
    """All theory results of round R: twin Theorem 1, probe Theorem 1/2, Corollary 1, metrics,
    checks. ``probe_round`` / ``poisoned`` only label the probe (round index, whether the attacker
    poisoned in it)."""
    sets = EvaluationSets(
        X_clean=setup.test_Xa,
        y_clean=setup.test_y,
        X_backdoor=setup.backdoor_Xa,
        target=setup.config.target,
    )
    t1_twin, checks = theorem1_pair(W_nodef, W_def, sets, "twin")
    t1_probe, probe_checks = theorem1_pair(probe.W_nodef, probe.W_def, sets, "probe")
    t2 = theorem2_round(probe, sets, model_kind, clean_budget)
    cor, cor_checks = corollary_round(
        probe, sets, taus, t2.model, t2.per_sample, t2.support, t2.result.delta_inf
    )
    assert (
        t2.result.deltaW_rel_error is not None
    )  # theorem2_round compares with the simulated DeltaW
    probe_result = ProbeResult(
        theorem1=t1_probe,
        deltaW_rel_error=t2.result.deltaW_rel_error,
        closed_form_applies=probe.closed_form_applies,
        round=probe_round,
        start_round=probe_round - 1,
        poisoned=poisoned,
        metrics=threshold_metrics(probe.W_nodef, probe.W_def, sets, [metrics_tau], metrics_tau),
    )
    return RoundResult(
        theorem1=t1_twin,
        probe=probe_result,
        theorem2=t2.result,
        corollary1=cor,
        metrics=threshold_metrics(W_nodef, W_def, sets, taus, metrics_tau),
        checks=checks + probe_checks + t2.checks + cor_checks,
    )


def analyse_twin_round(
    setup: Setup, twin: TwinResult, r: int, settings: AnalysisSettings
) -> tuple[RoundResult, Probe]:
    """Probe the round that starts from ``W^{nd}_r`` (round r+1) and analyse it with the twin pair
    after r rounds; returns the result and the raw probe. The probe's inversion is warm-started from
    the defense twin's inversion of round r (as the twin itself would do)."""
    from linear_fl.probe import one_round_probe

    inversions = twin.defense.inversions
    warm = inversions[r - 1].warm_starts() if len(inversions) >= r else None
    raw = one_round_probe(setup, twin.nodef.globals[r], r + 1, warm=warm)
    result = analyse_round(
        setup,
        twin.nodef.globals[r],
        twin.defense.globals[r],
        probe_inputs(raw),
        settings.taus,
        settings.metrics_tau,
        settings.model_kind,
        settings.clean_budget,
        r + 1,
        bool(raw.poisoned),
    )
    return result, raw


def series_check(series: list[tuple[int, RoundResult]]) -> Check:
    """Must hold: every must-hold check of every round of the series passed."""
    failures = [
        f"round {r}: {c.name}" for r, result in series for c in failed_must_hold(result.checks)
    ]
    return Check(
        "series: must-hold checks at every round 1..R",
        0.0,
        float(len(failures)),
        passed=not failures,
        must_hold=True,
        detail="all passed" if not failures else "; ".join(failures),
    )


def verify(
    config: LinearFLConfig,
    R: int,
    settings: AnalysisSettings,
    all_rounds: bool = False,
    progress: bool = True,
) -> Verification:
    """Run the protocol (module docstring) for ``R`` rounds of ``config``."""
    from linear_fl.twin import prepare, run_twin

    setup = prepare(config)
    twin = run_twin(setup, R, progress=progress, evaluate=False)  # per-round ACC/ASR: not reported
    result, raw_probe = analyse_twin_round(setup, twin, R, settings)
    series, checks = None, list(result.checks)
    if all_rounds:
        series = [
            (r, result if r == R else analyse_twin_round(setup, twin, r, settings)[0])
            for r in tqdm(range(1, R + 1), desc="per-round probes", disable=not progress)
        ]
        checks.append(series_check(series))
    return Verification(
        setup=setup,
        twin=twin,
        round=R,
        result=result,
        raw_probe=raw_probe,
        series=series,
        checks=checks,
    )
