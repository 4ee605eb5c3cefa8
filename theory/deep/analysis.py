"""Every check of one deep probe (issue 15), from a :class:`~theory.deep.state.DeepProbeState`
alone.

Pure functions of arrays (no torch), so a saved state reproduces the JSON exactly. Parts:

* (a) last layer only, features frozen (THEORY.md sections 3-7 on ``\\tilde\\phi(x)``):
  ``last_layer_sgd`` (the engine's SGD; Theorem 1 holds for any ``\\Delta W``) and
  ``last_layer_protocol`` (one full-batch step: the closed form, Theorem 2 and Corollary 1 in the
  frozen-residual model F-hat, rigorous for the realised round);
* (b) ``all_layers``: the last-layer bracket against the full round's loss change
  (:mod:`theory.deep.carry`);
* ``trigger_error``: the feature-space trigger error ``\\delta_\\phi`` of the hardening samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import softmax

from theory.analysis import (
    DELTA_W_RTOL,
    EvaluationSets,
    ModelPair,
    corollary_round,
    frozen_certificates,
    theorem1_pair,
)
from theory.corollary1 import code_semantics_counts
from theory.deep.carry import carry_summary, containment, frozen_round_bracket, last_layer_bracket
from theory.deep.rounds import client_rounds, closed_form_deltaW, pair_order, stacked_frozen_model
from theory.deep.state import DeepProbeState
from theory.frozen import relative_error
from theory.report import Check, fmt
from theory.theorem1 import theorem1_bounds

LOGIT_ATOL = 1e-9  # network logits vs W phi~ in float64 (features frozen)
PARTS = ("clean", "backdoor")


def evaluation_sets(state: DeepProbeState) -> EvaluationSets:
    """Clean and backdoor test sets in feature space at ``G_R`` (bias feature last)."""
    return EvaluationSets(
        X_clean=state.X_clean,
        y_clean=state.y_clean,
        X_backdoor=state.X_backdoor,
        target=state.target,
    )


def pair_metrics(
    logits: dict[str, tuple[np.ndarray, np.ndarray]],
    y_clean: np.ndarray,
    target: int,
    taus: list[float],
) -> list[dict[str, Any]]:
    """ACC / ASR and the Table-4 counts without and with defense at each ``tau`` (code semantics,
    THEORY.md 7.2); ``logits`` maps ``no_defense`` / ``defense`` to (clean, backdoor) logits."""
    rows = []
    for tau in taus:
        row: dict[str, Any] = {"tau": tau}
        for name, (clean, backdoor) in logits.items():
            counts = code_semantics_counts(
                softmax(clean, axis=1), y_clean, softmax(backdoor, axis=1), target, tau
            )
            row[name] = {
                "acc": counts["n_acc"] / len(clean),
                "asr": counts["n_asr"] / max(len(backdoor), 1),
                **counts,
            }
        rows.append(row)
    return rows


def _linear_logits(
    sets: EvaluationSets, W_nodef: np.ndarray, W_def: np.ndarray
) -> dict[str, tuple]:
    return {
        "no_defense": (sets.X_clean @ W_nodef.T, sets.X_backdoor @ W_nodef.T),
        "defense": (sets.X_clean @ W_def.T, sets.X_backdoor @ W_def.T),
    }


def _theorem1_part(
    pair: ModelPair, sets: EvaluationSets, label: str
) -> tuple[dict[str, Any], list[Check]]:
    """Theorem 1 on clean and backdoor features with the counters ``violations_clean/backdoor``."""
    t1, checks = theorem1_pair(pair.W_nodef, pair.W_def, sets, label)
    return {
        "theorem1": t1.to_dict(),
        "violations_clean": t1.clean.violations,
        "violations_backdoor": t1.backdoor.violations,
    }, checks


def last_layer_sgd(
    state: DeepProbeState, sets: EvaluationSets, taus: list[float]
) -> tuple[dict, list[Check]]:
    """(a) with the engine's SGD: the features-frozen check (network logits = ``W\\tilde\\phi``),
    Theorem 1 per sample (must hold: 0 violations) and Corollary 1's certified vs actual counts."""
    pair = ModelPair(state.sgd_W_nodef, state.sgd_W_def)
    result, checks = _theorem1_part(pair, sets, "(a) SGD")
    checks.insert(
        0,
        Check(
            "(a) SGD features frozen: network logits = W phi~",
            LOGIT_ATOL,
            state.sgd_logit_error,
            passed=state.sgd_logit_error <= LOGIT_ATOL,
            must_hold=True,
            detail=f"max |z_net - W phi~| = {fmt(state.sgd_logit_error, 2)} (<= {LOGIT_ATOL:g})",
        ),
    )
    cor, cor_checks = corollary_round(pair, sets, taus)
    result.update(
        corollary1=[row.to_dict() for row in cor],
        logit_error=state.sgd_logit_error,
        metrics=pair_metrics(
            _linear_logits(sets, pair.W_nodef, pair.W_def), sets.y_clean, sets.target, taus
        ),
    )
    return result, checks + [_renamed(c, "(a) SGD ") for c in cor_checks]


def _renamed(check: Check, prefix: str) -> Check:
    return Check(
        prefix + check.name, check.bound, check.actual, check.passed, check.must_hold, check.detail
    )


def last_layer_protocol(
    state: DeepProbeState,
    sets: EvaluationSets,
    taus: list[float],
    model_kind: str = "F-hat",
    clean_budget: float = 0.05,
) -> tuple[dict, list[Check]]:
    """(a) under the probe protocol: Theorem 1, closed-form vs simulated ``\\Delta W`` (must agree
    to 1e-10 relative), Theorem 2 (paper ``\\varepsilon_P``, T2-A/B/C) in the stacked frozen model
    and Corollary 1 with the robust Jensen counts at ``\\|\\delta_\\phi\\|_\\infty``."""
    pair = ModelPair(state.protocol_W_nodef, state.protocol_W_def)
    result, checks = _theorem1_part(pair, sets, "(a) protocol")
    simulated = pair.W_def - pair.W_nodef
    rounds = client_rounds(state)
    closed = closed_form_deltaW(rounds, simulated.shape)
    rel = relative_error(closed, simulated) if np.any(simulated) or np.any(closed) else 0.0
    checks.append(_closed_form_check(rel, len(rounds), simulated))
    result.update(
        deltaW_rel_error=rel,
        deltaW_norm=float(np.linalg.norm(simulated)),
        hardening_clients=len(rounds),
        metrics=pair_metrics(
            _linear_logits(sets, pair.W_nodef, pair.W_def), sets.y_clean, sets.target, taus
        ),
    )
    if not rounds:
        checks.append(_nothing_to_certify_check())
        cor, cor_checks = corollary_round(pair, sets, taus)
        result.update(theorem2=None, corollary1=[row.to_dict() for row in cor])
        return result, checks + [_renamed(c, "(a) protocol ") for c in cor_checks]
    model = stacked_frozen_model(rounds, model_kind)
    order = pair_order(state)
    delta_rows = state.pool_X_hat[order] - state.pool_X_true[order]
    t2 = frozen_certificates(
        model, pair, delta_rows, sets, rigorous=model_kind == "F-hat", clean_budget=clean_budget
    )
    cor, cor_checks = corollary_round(
        pair, sets, taus, t2.model, t2.per_sample, t2.support, t2.result.delta_inf
    )
    result.update(theorem2=t2.result.to_dict(), corollary1=[row.to_dict() for row in cor])
    return result, checks + t2.checks + [_renamed(c, "(a) protocol ") for c in cor_checks]


def _closed_form_check(rel: float, hardening_clients: int, simulated: np.ndarray) -> Check:
    """The must-hold check that the closed-form ``\\Delta W`` matches the simulated one."""
    return Check(
        "DeltaW closed form vs simulated",
        DELTA_W_RTOL,
        rel,
        passed=rel < DELTA_W_RTOL,
        must_hold=True,
        detail=f"relative error {fmt(rel, 2)} (< {DELTA_W_RTOL:g} required; "
        f"{hardening_clients} hardening clients, "
        f"||DeltaW||_F={fmt(float(np.linalg.norm(simulated)))})",
    )


def _nothing_to_certify_check() -> Check:
    """The INFO line for a round in which no benign client hardened (no Theorem 2 to check)."""
    return Check(
        "Thm 2",
        None,
        None,
        passed=False,
        must_hold=False,
        detail="no benign client hardened (no FLIP stamping direction): nothing to certify",
    )


def trigger_error(state: DeepProbeState) -> dict[str, Any]:
    """Feature-space trigger error of every hardening pair ``a`` (a local sample ``x_j`` of a benign
    client and one inverted trigger ``\\hat t`` of FLIP's stamping directions at ``G_R``):
    ``\\delta_{\\phi,a} = \\phi(stamp(x_j, \\hat t)) - \\phi(stamp(x_j, t_{true}))``, ``\\phi`` =
    the penultimate features of ``G_R``, ``\\|\\cdot\\|_\\infty`` over the feature coordinates (bias
    excluded). ``feature_inf_max`` is the radius the certificates are compared with."""
    delta = (state.pool_X_hat - state.pool_X_true)[:, :-1]
    if delta.shape[0] == 0:
        return {"n_pairs": 0, "feature_dim": int(delta.shape[1])}
    inf = np.abs(delta).max(axis=1)
    l2 = np.linalg.norm(delta, axis=1)
    feature_scale = np.abs(state.pool_X_true[:, :-1]).max(axis=1)
    return {
        "n_pairs": int(delta.shape[0]),
        "feature_dim": int(delta.shape[1]),
        "norm": "inf over features",
        "feature_inf_max": float(inf.max()),
        "feature_inf_median": float(np.median(inf)),
        "feature_inf_mean": float(inf.mean()),
        "feature_l2_mean": float(l2.mean()),
        "feature_true_inf_median": float(np.median(feature_scale)),
        "input_inf_max": float(state.pool_input_error.max()),
        "input_inf_mean": float(state.pool_input_error.mean()),
        "pairs_per_client": np.bincount(
            state.pool_client, minlength=len(state.benign_weights)
        ).tolist(),
    }


def all_layers(
    state: DeepProbeState, taus: list[float]
) -> tuple[dict, list[Check], dict[str, np.ndarray]]:
    """(b): per set, the last-layer bracket of the full round
    (:func:`theory.deep.carry.last_layer_bracket`) against its actual loss change, and the bracket
    of the last-layer-only SGD round against the same change (``frozen_round``). INFO lines only:
    nothing here must hold."""
    result: dict[str, Any] = {}
    checks, samples = [], {}
    labels, inputs = _all_layers_inputs(state)
    for part in PARTS:
        z_nd, z_d, features, features_R = inputs[part]
        bounds = last_layer_bracket(
            z_nd, z_d, features, state.full_W_nodef, state.full_W_def, labels[part]
        )
        summary = carry_summary(bounds)
        lb, ub, actual = frozen_round_bracket(
            features_R, state.sgd_W_nodef, state.sgd_W_def, labels[part], bounds.actual
        )
        summary["frozen_round"] = containment(lb, ub, actual, bounds.scale)
        result[part] = summary
        result[f"violations_{part}"] = summary["violations"]
        samples.update(
            {
                f"full_{part}_{key}": getattr(bounds, key)
                for key in ("lb", "lb_jensen", "actual", "ub")
            }
        )
        checks.append(_all_layers_check(part, summary))
    result["metrics"] = pair_metrics(
        {
            "no_defense": (state.full_logits_nodef_clean, state.full_logits_nodef_backdoor),
            "defense": (state.full_logits_def_clean, state.full_logits_def_backdoor),
        },
        state.y_clean,
        state.target,
        taus,
    )
    return result, checks, samples


_SetInputs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Full-round logits without and with defense, full-round features, round-R features."""


def _all_layers_inputs(
    state: DeepProbeState,
) -> tuple[dict[str, np.ndarray], dict[str, _SetInputs]]:
    """Per set: labels, full-round logits (no defense, defense), full and round-R features."""
    labels = {"clean": state.y_clean, "backdoor": np.full(len(state.X_backdoor), state.target)}
    inputs = {
        "clean": (
            state.full_logits_nodef_clean,
            state.full_logits_def_clean,
            state.full_X_clean,
            state.X_clean,
        ),
        "backdoor": (
            state.full_logits_nodef_backdoor,
            state.full_logits_def_backdoor,
            state.full_X_backdoor,
            state.X_backdoor,
        ),
    }
    return labels, inputs


def _all_layers_check(part: str, summary: dict[str, Any]) -> Check:
    """The INFO check that the full round's loss change on ``part`` is in the last-layer bracket."""
    return Check(
        f"(b) all layers {part}: inside the last-layer bracket",
        summary["lb"],
        summary["actual"],
        passed=summary["violations"] == 0,
        must_hold=False,
        detail=_carry_detail(summary),
    )


def _carry_detail(summary: dict[str, Any]) -> str:
    frozen = summary["frozen_round"]
    return (
        f"{100 * summary['inside_fraction']:.1f}% inside [LB, UB] ({summary['outside']} of "
        f"{summary['n']} outside: {summary['below']} below, {summary['above']} above; distance "
        f"median {fmt(summary['distance_median'], 2)}, max {fmt(summary['distance_max'], 2)} "
        f"nats); averages LB={fmt(summary['lb'])} LB^J={fmt(summary['lb_jensen'])} "
        f"dL={fmt(summary['actual'])} UB={fmt(summary['ub'])}; inside the last-layer-only round's "
        f"bracket: {100 * frozen['inside_fraction']:.1f}%"
    )


def per_sample_bounds(state: DeepProbeState) -> dict[str, np.ndarray]:
    """Per-sample ``lb, lb_jensen, actual, ub`` of the two (a) rounds (for the scatter figure)."""
    sets = evaluation_sets(state)
    samples = {}
    targets = np.full(len(sets.X_backdoor), sets.target)
    for name, (W, W_prime) in (
        ("sgd", (state.sgd_W_nodef, state.sgd_W_def)),
        ("protocol", (state.protocol_W_nodef, state.protocol_W_def)),
    ):
        for part, X, y in (
            ("clean", sets.X_clean, sets.y_clean),
            ("backdoor", sets.X_backdoor, targets),
        ):
            bounds = theorem1_bounds(W, W_prime, X, y)
            samples.update(
                {
                    f"{name}_{part}_{key}": getattr(bounds, key)
                    for key in ("lb", "lb_jensen", "actual", "ub")
                }
            )
    return samples


def analyse(
    state: DeepProbeState, taus: list[float], model_kind: str = "F-hat", clean_budget: float = 0.05
) -> tuple[dict[str, Any], list[Check], dict[str, np.ndarray]]:
    """All parts of one probe: (JSON-ready results, checks, per-sample arrays for the figures)."""
    sets = evaluation_sets(state)
    sgd, sgd_checks = last_layer_sgd(state, sets, taus)
    protocol, protocol_checks = last_layer_protocol(state, sets, taus, model_kind, clean_budget)
    full, full_checks, samples = all_layers(state, taus)
    payload = {
        "last_layer_sgd": sgd,
        "last_layer_protocol": protocol,
        "all_layers": full,
        "trigger_error": trigger_error(state),
        "metrics_start": pair_metrics(
            {"start": (sets.X_clean @ state.W_start.T, sets.X_backdoor @ state.W_start.T)},
            sets.y_clean,
            sets.target,
            taus,
        ),
    }
    return (
        payload,
        sgd_checks + protocol_checks + full_checks,
        {**per_sample_bounds(state), **samples},
    )
