"""Markdown of the deep probe (issue 15): bound-vs-actual tables and the README's generated section.

Every number comes from the saved ``theory.verify --deep --json`` files under
``results/deep_theory``. The README section ``deep-theory`` (between ``<!-- BEGIN deep-theory -->``
and ``<!-- END deep-theory -->``) is registered in :data:`figures.readme.SECTIONS`: ``python -m
figures readme`` rewrites it, and the test of the generated sections checks that the committed
README matches the committed results.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from figures.deep_theory import PARTS, DeepTheoryResult, by_round, load_deep_theory_results

TABLE_TAU = 0.4  # threshold of the Corollary-1 columns (the linear check's Table-3 tau, continuous)


def num(value: Any, digits: int = 3) -> str:
    """A float with ``digits`` significant digits (``None`` -> 'n/a')."""
    return "n/a" if value is None else f"{float(value):.{digits}g}"


def pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f}"


def _cor_row(rows: list[dict[str, Any]], tau: float) -> dict[str, Any] | None:
    return next((row for row in rows if abs(float(row["tau"]) - tau) < 1e-12), None)


def _t1_cell(summary: dict[str, Any]) -> str:
    return (
        f"{num(summary['lb'])} / {num(summary['lb_jensen'])} / **{num(summary['actual'])}** / "
        f"{num(summary['ub'])} ({summary['violations']})"
    )


def _asr_start(data: dict[str, Any]) -> str:
    row = _cor_row(data["metrics_start"], 0.0) or data["metrics_start"][0]
    return pct(row["start"]["asr"])


def last_layer_table(results: Sequence[DeepTheoryResult]) -> list[str]:
    """(a): Theorem 1 averages ``LB / LB^J / actual / UB (violations)`` and Corollary 1 at
    :data:`TABLE_TAU`.
    """
    lines = [
        "**(a) last layer only, features frozen** (Theorem 1 on phi~; LB / LB^J / **actual** / UB "
        "of the mean loss change, per-sample violations in brackets; Corollary 1 at tau = "
        f"{TABLE_TAU:g}: backdoor samples newly neutralised, actual / certified by the Jensen "
        "bracket / by the Theorem-1 bracket)",
        "",
        "| seed | R | ASR(G_R) % | round | clean | backdoor "
        "| newly neutralised (actual / Jensen / T1) |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        data, (seed, rnd) = result.data, result.key
        for key, name in (
            ("last_layer_sgd", "engine SGD"),
            ("last_layer_protocol", "probe protocol"),
        ):
            part = data[key]
            cor = _cor_row(part["corollary1"], TABLE_TAU)
            counts = (
                "n/a"
                if cor is None
                else f"{cor['newly_neutralised_actual']} / "
                f"{cor['certified_jensen']['newly_neutralised']} / "
                f"{cor['certified_t1']['newly_neutralised']}"
            )
            lines.append(
                f"| {seed} | {rnd} | {_asr_start(data)} | {name} | "
                f"{_t1_cell(part['theorem1']['clean'])} | {_t1_cell(part['theorem1']['backdoor'])} "
                f"| {counts} |"
            )
    return lines


def theorem2_table(results: Sequence[DeepTheoryResult]) -> list[str]:
    """(a) probe protocol: closed form vs simulated, trigger error in feature space, Theorem 2's
    radii.
    """
    lines = [
        "**(a) probe protocol: closed form and Theorem 2** (feature-space trigger error "
        "‖delta_phi‖_inf over all hardening pairs, per-sample error model; eps*_A needs the "
        "premise T in argmin u, eps*_B needs LB^J_b(0) > 0)",
        "",
        "| seed | R | DeltaW rel. error | pairs | max / median ‖delta_phi‖_inf | eps_P | eps*_A | "
        "eps*_B (LB^J_b(0)) | certified |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        data, (seed, rnd) = result.data, result.key
        protocol, error = data["last_layer_protocol"], data["trigger_error"]
        t2 = protocol.get("theorem2") or {}
        certified = ", ".join(name for name in ("A", "B") if t2.get(f"inside_{name}")) or "no"
        lines.append(
            f"| {seed} | {rnd} | {num(protocol['deltaW_rel_error'], 2)} | {error['n_pairs']} | "
            f"{num(error.get('feature_inf_max'))} / {num(error.get('feature_inf_median'))} | "
            f"{t2.get('eps_paper_status', 'n/a')} | {num(t2.get('eps_A'))} | "
            f"{num(t2.get('eps_B'))} ({num(t2.get('lbj0'))}) | {certified} |"
        )
    return lines


def all_layers_table(results: Sequence[DeepTheoryResult]) -> list[str]:
    """(b): the share of samples inside the last-layer bracket and the distance of the others."""
    lines = [
        "**(b) all layers train**: the last-layer bracket (u = (W' - W) phi~ at the no-defense "
        "model's features) against the full round's loss change; distance of the samples outside "
        "it in nats; last column: inside the bracket of the last-layer-only round (a)",
        "",
        "| seed | R | part | inside % | outside (below / above) | distance median / max | LB^J / "
        "**actual** / UB | inside (a)'s bracket % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        (seed, rnd), data = result.key, result.data["all_layers"]
        for part in PARTS:
            s = data[part]
            lines.append(
                f"| {seed} | {rnd} | {part} | {pct(s['inside_fraction'])} | {s['below']} / "
                f"{s['above']} | {num(s['distance_median'], 2)} / {num(s['distance_max'], 2)} | "
                f"{num(s['lb_jensen'])} / **{num(s['actual'])}** / {num(s['ub'])} | "
                f"{pct(s['frozen_round']['inside_fraction'])} |"
            )
    return lines


def deep_theory_tables(results: Sequence[DeepTheoryResult]) -> str:
    """All three tables as one markdown document."""
    first = results[0].data
    header = [
        f"# Theory on the CNN's last layer ({first['dataset']}, {first['attack']} attack)",
        "",
        "Generated by `python -m figures deep-theory` from the `theory.verify --deep --json` "
        "files beside it. R is the probed round: the probe is round R+1 from the run's global "
        "model G_R.",
        "",
    ]
    body = (
        last_layer_table(results)
        + [""]
        + theorem2_table(results)
        + [""]
        + all_layers_table(results)
    )
    return "\n".join(header + body) + "\n"


def aggregates(results: Sequence[DeepTheoryResult]) -> dict[str, Any]:
    """The numbers the README section quotes (sums and extremes over every probe)."""

    def total(key: str) -> int:
        return sum(
            int(r.data[part][f"violations_{s}"]) for r in results for part in (key,) for s in PARTS
        )

    def samples(key: str) -> int:
        return sum(int(r.data[key]["theorem1"][s]["n"]) for r in results for s in PARTS)

    t2 = [r.data["last_layer_protocol"].get("theorem2") or {} for r in results]
    inside = {
        rnd: {s: [r.data["all_layers"][s]["inside_fraction"] for r in group] for s in PARTS}
        for rnd, group in by_round(results).items()
    }
    cor = {
        key: [_cor_row(r.data[key]["corollary1"], TABLE_TAU) for r in results]
        for key in ("last_layer_sgd", "last_layer_protocol")
    }
    return {
        "probes": len(results),
        "seeds": sorted({r.key[0] for r in results}),
        "rounds": sorted(by_round(results)),
        "violations_sgd": total("last_layer_sgd"),
        "samples_sgd": samples("last_layer_sgd"),
        "violations_protocol": total("last_layer_protocol"),
        "samples_protocol": samples("last_layer_protocol"),
        "deltaW_rel_error_max": max(
            r.data["last_layer_protocol"]["deltaW_rel_error"] for r in results
        ),
        "logit_error_max": max(r.data["last_layer_sgd"]["logit_error"] for r in results),
        "eps_paper_status": sorted({t.get("eps_paper_status", "n/a") for t in t2}),
        "premise_A": sum(bool(t.get("premise_A")) for t in t2),
        "has_eps_B": sum(t.get("eps_B") is not None for t in t2),
        "certified": sum(bool(t.get("inside_A") or t.get("inside_B")) for t in t2),
        "delta_phi_max": [r.data["trigger_error"].get("feature_inf_max") for r in results],
        "inside": {
            rnd: {
                s: (float(np.mean(v)), float(np.min(v)), float(np.max(v))) for s, v in parts.items()
            }
            for rnd, parts in inside.items()
        },
        "newly": {
            key: (
                sum(c["newly_neutralised_actual"] for c in rows if c),
                sum(c["certified_jensen"]["newly_neutralised"] for c in rows if c),
                sum(c["certified_t1"]["newly_neutralised"] for c in rows if c),
            )
            for key, rows in cor.items()
        },
        "full_backdoor_actual_range": (
            min(r.data["all_layers"]["backdoor"]["actual"] for r in results),
            max(r.data["all_layers"]["backdoor"]["actual"] for r in results),
        ),
        "eps_B_ratio": [t["delta_inf"] / t["eps_B"] for t in t2 if t.get("eps_B")],
    }


RESULTS_SUBDIR = "deep_theory"


def deep_theory_section(results_root: Path) -> str:
    """The README's "Theory on deep models" text from ``results_root/deep_theory`` (every number
    from the probe JSON files there; :mod:`figures.deep_theory_prose`)."""
    from figures.deep_theory_prose import section_lines

    folder = Path(results_root) / RESULTS_SUBDIR
    if not any(folder.glob("*.json")):
        return "No deep-theory probes are committed yet.\n"
    results = load_deep_theory_results([folder])
    return (
        "\n".join(section_lines(aggregates(results), results, f"results/{RESULTS_SUBDIR}")) + "\n"
    )
