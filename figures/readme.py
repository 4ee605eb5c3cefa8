"""Generated README sections: numbers in the README come from committed results, never typed by
hand.

A generated section sits between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` markers in
README.md. ``python -m figures readme`` rewrites every registered section from ``results/``;
``--check`` only reports sections that differ (a test runs the check, so README and results cannot
drift apart). Register a new section by adding a ``name -> generator(results_root) -> markdown``
entry to :data:`SECTIONS`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from deepfl.reproduce.aggregate import TableRow, aggregate_table, seeds_present
from deepfl.reproduce.scales import SCALES, Scale
from deepfl.reproduce.tables import TABLES
from figures.deep_theory_text import deep_theory_section
from figures.flip_oracles import flip_oracles_section
from theory.readme_table3 import linear_table3_section

REASONS_NAME = "reasons.json"


def _reasons(results_root: Path) -> dict[str, str]:
    path = results_root / REASONS_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def row_key(scale: str, table: str, row: TableRow) -> str:
    """``scale/table/dataset/attack/defense/variant/tau`` -- what results/reasons.json keys match
    (by prefix).
    """
    cell = f"{row.dataset}/{row.attack}/{row.defense}/{row.variant or '-'}"
    return f"{scale}/{table}/{cell}/tau{row.tau:g}"


def _reason(reasons: dict[str, str], key: str) -> str:
    matches = [k for k in reasons if key.startswith(k)]
    return reasons[max(matches, key=len)] if matches else ""


def _pair(
    acc: float | None, asr: float | None, acc_std: float | None = None, asr_std: float | None = None
) -> str:
    def one(mean: float | None, std: float | None) -> str:
        if mean is None:
            return "-"
        return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"

    return f"{one(acc, acc_std)} / {one(asr, asr_std)}"


def _status_line(scale: Scale, table: str, row: TableRow, reasons: dict[str, str]) -> str:
    def diff(ours: float | None, paper: float | None) -> str:
        return "-" if ours is None or paper is None else f"{ours - paper:+.1f}"

    key = row_key(scale.name, table, row)
    note = _reason(reasons, key) if row.flag else ""
    if row.flag and not note:
        note = "not yet explained"
    defense = row.defense + (f" ({row.variant})" if row.variant else "")
    return (
        f"| {table} | {row.dataset} | {row.attack} | {defense} | {row.tau:g} | {len(row.seeds)} | "
        f"{_pair(row.acc_mean, row.asr_mean, row.acc_std, row.asr_std)} | "
        f"{_pair(row.paper_acc, row.paper_asr)} | {diff(row.acc_mean, row.paper_acc)} / "
        f"{diff(row.asr_mean, row.paper_asr)} | {note} |"
    )


def _status_scales(results_root: Path) -> list[tuple[Scale, list[int]]]:
    """The scales the status shows (not ``ci``) with the seeds committed there."""
    found = [(scale, seeds_present(results_root, scale)) for scale in SCALES.values()]
    return [(scale, seeds) for scale, seeds in found if seeds and scale.name != "ci"]


def _acc_asr_rows(
    results_root: Path, scale: Scale, seeds: list[int]
) -> list[tuple[str, list[TableRow]]]:
    """``(table, rows)`` of every ACC / ASR table at ``scale`` (rows without seeds included)."""
    return [
        (spec.name, aggregate_table(spec, scale, spec.build(scale), seeds, results_root))
        for spec in TABLES.values()
        if spec.metric == "acc_asr"
    ]


def reproduction_status(results_root: Path) -> str:
    """Every table row with committed results, per scale: ours (mean ± std, seeds), the paper's, the
    gap, why.
    """
    reasons = _reasons(results_root)
    out: list[str] = []
    for scale, seeds in _status_scales(results_root):
        out += [
            f"#### Scale `{scale.name}`",
            "",
            "| table | data set | attack | defense (variant) | tau | seeds | ours: ACC / ASR | "
            "paper: ACC / ASR | difference | why (where > 5 points or 2 std) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        missing: list[str] = []
        machines: set[str] = set()
        for table, rows in _acc_asr_rows(results_root, scale, seeds):
            shown = [row for row in rows if row.seeds]
            out += [_status_line(scale, table, row, reasons) for row in shown]
            machines.update(name for row in shown for name in row.ran_on)
            if len(shown) < len(rows):
                missing.append(f"{table} {len(rows) - len(shown)}/{len(rows)}")
        out += [
            "",
            f"Cells ran on: {'; '.join(sorted(machines))} (each table in `results/{scale.name}/` "
            "names the machine per row).",
            "",
            f"Rows not yet run at `{scale.name}`: {', '.join(missing) or 'none'}.",
            "",
        ]
    if not out:
        return "No deep results are committed yet.\n"
    return "\n".join(out).rstrip() + "\n"


SEED_WORDS = ("One", "Two", "Three", "Four", "Five", "Six")
_SEED_COUNT = re.compile(r"\b(" + "|".join(SEED_WORDS) + r") seeds?\b")


def reasons_out_of_date(results_root: Path) -> list[str]:
    """Flagged rows whose reason does not end its seed counts ("One seed." ... "Three seeds.") with
    the number of seeds the row has now: a reason written before a seed landed, which the next
    seed may have changed. One line per row, ``row key: what is wrong``."""
    reasons = _reasons(results_root)
    problems = []
    for scale, seeds in _status_scales(results_root):
        for table, rows in _acc_asr_rows(results_root, scale, seeds):
            for row in rows:
                key = row_key(scale.name, table, row)
                note = _reason(reasons, key) if row.seeds and row.flag else ""
                counts = _SEED_COUNT.findall(note)
                count = len(row.seeds)
                want = SEED_WORDS[count - 1] if 0 < count <= len(SEED_WORDS) else str(count)
                if note and (not counts or counts[-1] != want):
                    said = counts[-1] if counts else "no count"
                    problems.append(f"{key}: the reason says {said}, the row has {want} seed(s)")
    return problems


SECTIONS: dict[str, Callable[[Path], str]] = {
    "reproduction-status": reproduction_status,
    "deep-theory": deep_theory_section,
    "linear-table3": linear_table3_section,
    "flip-oracles": flip_oracles_section,
}
_MARKER = re.compile(
    r"(<!-- BEGIN (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- END (?P=name) -->)", re.S
)


def render(readme: str, results_root: Path) -> str:
    """``readme`` with every registered section between its markers regenerated from
    ``results_root``.
    """

    def replace(match: re.Match[str]) -> str:
        generator = SECTIONS.get(match["name"])
        if generator is None:
            return match.group(0)
        return f"{match.group(1)}{generator(results_root)}{match.group(4)}"

    return _MARKER.sub(replace, readme)


def stale_sections(readme: str, results_root: Path) -> list[str]:
    """Names of the generated sections whose README text differs from what ``results_root``
    gives.
    """
    fresh = {m["name"]: m["body"] for m in _MARKER.finditer(render(readme, results_root))}
    return [
        m["name"]
        for m in _MARKER.finditer(readme)
        if m["name"] in SECTIONS and fresh[m["name"]] != m["body"]
    ]
