"""Markdown tables: ours beside the paper's numbers.

* :func:`theory_tables_markdown` - Table 3 (ACC/ASR, %) and Table 4 (counts N^acc, N^asr with the
  rejected counts beside them) of the logistic-regression experiment, from ``theory.verify`` results
  (THEORY.md sections 7.4 and 10).
* :func:`deep_table_markdown` - final ACC/ASR per (defense, attack) of deepfl runs, like Tables 1-2.

Pure functions of already-loaded results; rates in the result files are fractions in [0, 1] and are
printed as percentages with two decimals, like the paper.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from figures.deep_plots import RunSummary
from figures.paper_numbers import (
    DEEP_MNIST_BY_ATTACK,
    DEFENSE_LABELS,
    TABLE3_LOGREG,
    TABLE4_BACKDOOR_TOTAL,
    TABLE4_CLEAN_TOTAL,
    TABLE4_COUNTS,
)


def _percent(rate: Any) -> str:
    """A rate in [0, 1] as a percentage with two decimals; ``None`` -> 'n/a'."""
    if rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return "n/a"
    return f"{100.0 * float(rate):.2f}"


def _per_tau_entry(metrics: Mapping[str, Any], tau: float) -> Mapping[str, Any] | None:
    """The ``metrics.per_tau`` entry (twin pair, with Table-4 counts) at ``tau``, if recorded."""
    for entry in metrics.get("per_tau") or []:
        if math.isclose(float(entry["tau"]), tau, rel_tol=1e-9, abs_tol=1e-12):
            return entry
    return None


def _count_cell(
    entry: Mapping[str, Any] | None,
    side: str,
    count_key: str,
    rejected_key: str,
    rate: Any,
    total: int,
) -> str:
    """'N (rejected R)' from the per-tau counts, else N = round(rate * total) with rejected
    'n/a'.
    """
    counts = None if entry is None else entry.get(side)
    if isinstance(counts, Mapping) and count_key in counts and rejected_key in counts:
        return f"{int(counts[count_key])} (rejected {int(counts[rejected_key])})"
    if rate is None:
        return "n/a"
    return f"{round(float(rate) * total)} (rejected n/a)"


def theory_tables_markdown(results: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """Table 3 and Table 4 of the paper reproduced from ``theory.verify`` results.

    ``results`` holds (source name, validated result) pairs, e.g. one single-shot and one continuous
    file; each becomes rows of both tables. Both tables are for the twin pair after R rounds
    (``metrics``, at ``metrics.tau``). The Table 4 columns are N^acc = #(argmax = y, conf >= tau)
    and N^asr = #(argmax = T, conf >= tau) (THEORY.md section 7.2: the paper's entries equal
    round(Table-3 % x total), section 7.4), with the rejected counts #(conf < tau) from
    ``metrics.per_tau`` beside them (when absent: N = round(rate x total), rejected 'n/a').
    """
    table3 = [
        "## Table 3: ACC and ASR (%), no defense -> FLIP",
        "",
        "| attack | metric | ours: no defense | ours: FLIP | paper: no defense | paper: FLIP | "
        "ours from |",
        "|---|---|---|---|---|---|---|",
    ]
    table4 = [
        "## Table 4: sample counts, accepted and correct (N^acc) / accepted and -> target (N^asr)",
        "",
        "Rejected = confidence below tau. The paper prints the counts only.",
        "",
        "| attack | set | total: ours / paper | ours: no defense | ours: FLIP | paper: no defense "
        "| paper: FLIP |",
        "|---|---|---|---|---|---|---|",
    ]
    for source, result in results:
        attack = str(result["attack"])
        metrics = result["metrics"]
        tau = float(metrics["tau"])
        origin = f"{source} (round {result['round']}, tau {tau:g})"
        table3 += _table3_rows(attack, metrics, origin)
        table4 += _table4_rows(attack, metrics, tau)
    header = [
        "# Table 3 / Table 4 reproduction: logistic regression on MNIST",
        "",
        "Ours: `python -m theory.verify --json` results (THEORY.md section 10). Paper: Table 3 "
        "(section 5.3)",
        "and Table 4 (appendix A.2) of FLIP (ICLR 2023).",
        "",
    ]
    return "\n".join(header + table3 + [""] + table4) + "\n"


def _table3_rows(attack: str, metrics: Mapping[str, Any], origin: str) -> list[str]:
    """Table 3 rows (ACC, ASR in %) of one result beside the paper's values for ``attack``."""
    rows = []
    paper3 = TABLE3_LOGREG.get(attack)
    for metric in ("acc", "asr"):
        paper_cells = (
            ["n/a", "n/a"]
            if paper3 is None
            else [f"{getattr(paper3[side], metric):.2f}" for side in ("no_defense", "defense")]
        )
        rows.append(
            f"| {attack} | {metric.upper()} | {_percent(metrics['no_defense'][metric])} | "
            f"{_percent(metrics['defense'][metric])} | {paper_cells[0]} | {paper_cells[1]} | "
            f"{origin} |"
        )
    return rows


def _table4_rows(attack: str, metrics: Mapping[str, Any], tau: float) -> list[str]:
    """Table 4 rows (N^acc, N^asr with rejected counts) of one result beside the paper's."""
    lines = []
    entry = _per_tau_entry(metrics, tau)
    paper4 = TABLE4_COUNTS.get(attack)
    rows = (
        ("clean", "n_acc", "rejected_clean", "acc", "clean_total", TABLE4_CLEAN_TOTAL),
        (
            "poisoned",
            "n_asr",
            "rejected_backdoor",
            "asr",
            "backdoor_total",
            TABLE4_BACKDOOR_TOTAL,
        ),
    )
    for set_name, count_key, rejected_key, metric, total_key, paper_total in rows:
        total = int(metrics[total_key])
        ours = [
            _count_cell(entry, side, count_key, rejected_key, metrics[side][metric], total)
            for side in ("no_defense", "defense")
        ]
        paper_cells = (
            ["n/a", "n/a"]
            if paper4 is None
            else [str(getattr(paper4[side], count_key)) for side in ("no_defense", "defense")]
        )
        lines.append(
            f"| {attack} | {set_name} | {total} / {paper_total} | {ours[0]} | {ours[1]} | "
            f"{paper_cells[0]} | {paper_cells[1]} |"
        )
    return lines


def deep_table_markdown(runs: Sequence[RunSummary]) -> str:
    """Final ACC/ASR (%) per (attack, defense) of deepfl runs beside the paper's MNIST Tables 1-2.

    Rows are ordered by attack, then in the paper's defense order; defenses the paper does not
    report get 'n/a' in its columns. Several runs with the same (attack, defense) each get a row.
    """
    order = {key: index for index, key in enumerate(DEFENSE_LABELS)}
    lines = [
        "# Final ACC / ASR (%) per defense and attack, beside the paper's MNIST results",
        "",
        "Paper: Table 1 (single-shot) and Table 2 (continuous), MNIST columns, FLIP (ICLR 2023) "
        "section 5.2.",
        "",
        "| attack | defense | ours: ACC | ours: ASR | "
        "paper: ACC | paper: ASR | dataset | tau | run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in sorted(
        runs, key=lambda r: (r.attack, order.get(r.defense, len(order)), r.defense, r.name)
    ):
        table = DEEP_MNIST_BY_ATTACK.get(run.attack) if run.dataset == "mnist" else None
        paper = None if table is None else table.get(run.defense)
        paper_acc, paper_asr = (
            ("n/a", "n/a") if paper is None else (f"{paper.acc:.2f}", f"{paper.asr:.2f}")
        )
        lines.append(
            f"| {run.attack} | {DEFENSE_LABELS.get(run.defense, run.defense)} | "
            f"{_percent(run.final_acc)} | {_percent(run.final_asr)} | {paper_acc} | {paper_asr} | "
            f"{run.dataset} | {run.tau:g} | {run.name} |"
        )
    return "\n".join(lines) + "\n"
