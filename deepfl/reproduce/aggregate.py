"""Compact cell results -> the paper's tables: one row per (dataset, attack, defense, variant, tau),
mean +- std.

Torch-free: tables and figures are rebuilt from ``results/`` alone. Rates are in PERCENT, like the
paper's. A row's value per seed is the run's last round (``CONVENTION``); ``last30`` is the mean
over the last 30 rounds (a steadier view of a still-moving run). ``std`` is the sample standard
deviation over seeds (ddof = 1; None for one seed). ``flag`` marks a row whose difference from the
paper exceeds 5 points or 2 std.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepfl.reproduce.compact import read_cell
from deepfl.reproduce.grid import Cell, Row, TableSpec
from deepfl.reproduce.scales import Scale
from figures.paper_numbers import FIGURE3_AUC_MNIST, paper_value
from fldata.atomic import write_text_atomic

CONVENTION = (
    "value at the run's last round (the paper reports ACC / ASR at least 60 rounds after the "
    "attack starts, section A.1); tau = 0 except FLIP under the continuous attack, shown at tau = "
    "0.3 (App. A.9) and at tau = 0 (App. A.6)"
)
LAST_ROUNDS = 30
FLAG_POINTS = 5.0


@dataclass(frozen=True)
class TableRow:
    """One aggregated row (the JSON row schema of issue 14, plus context)."""

    dataset: str
    attack: str
    defense: str
    variant: str
    scale: str
    tau: float
    seeds: list[int]
    acc_mean: float | None
    acc_std: float | None
    asr_mean: float | None
    asr_std: float | None
    paper_acc: float | None
    paper_asr: float | None
    paper_source: str | None
    acc_last30_mean: float | None
    asr_last30_mean: float | None
    auc_mean: float | None
    auc_std: float | None
    paper_auc: float | None
    missing_seeds: list[int]
    flag: str
    ran_on: list[str]


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else None
    return round(float(array.mean()), 4), None if std is None else round(std, 4)


def _at_tau(record: dict[str, Any], tau: float) -> int:
    for index, value in enumerate(record["taus"]):
        if math.isclose(value, tau, abs_tol=1e-12):
            return index
    raise KeyError(
        f"cell {record['cell']} has no evaluation at tau = {tau} (taus {record['taus']})"
    )


def _seed_values(record: dict[str, Any], tau: float) -> dict[str, float]:
    index = _at_tau(record, tau)
    acc = [v for v in record["acc"][index] if v is not None]
    asr = [v for v in record["asr"][index] if v is not None]
    values = {
        "acc": 100 * acc[-1],
        "asr": 100 * asr[-1],
        "acc_last": 100 * float(np.mean(acc[-LAST_ROUNDS:])),
        "asr_last": 100 * float(np.mean(asr[-LAST_ROUNDS:])),
    }
    if "auc" in record:
        values["auc"] = float(record["auc"])
    return values


def ran_on(record: dict[str, Any]) -> str:
    """What ran a cell: the summary's ``device_name`` (the GPU's name on CUDA), else, for cells
    written before it was recorded, the CPU's architecture and core count from the provenance."""
    if record.get("device_name"):
        return str(record["device_name"])
    if str(record.get("device", "cpu")).startswith("cuda"):
        return "CUDA GPU (name not recorded)"
    return f"{record.get('machine') or 'cpu'} CPU, {record.get('cpu_count')} cores"


def _flag(mean: float | None, std: float | None, paper: float | None) -> bool:
    if mean is None or paper is None:
        return False
    gap = abs(mean - paper)
    return gap > FLAG_POINTS or (std is not None and gap > 2 * std)


def aggregate_row(
    spec: TableSpec,
    row: Row,
    tau: float,
    scale: Scale,
    seeds: list[int],
    records: dict[int, dict[str, Any]],
) -> TableRow:
    """Mean +- std over the seeds present for ``row`` at ``tau``, beside the paper's value."""
    present = [seed for seed in seeds if seed in records]
    per_seed = [_seed_values(records[seed], tau) for seed in present]
    stats = {
        key: _mean_std([values[key] for values in per_seed if key in values])
        for key in ("acc", "asr", "acc_last", "asr_last", "auc")
    }
    paper = paper_value(spec.name, row.dataset, row.attack, row.defense, row.setting, tau)
    paper_auc = FIGURE3_AUC_MNIST if spec.metric == "auc" and row.dataset == "mnist" else None
    flags = [
        name
        for name, key, ref in (
            ("ACC", "acc", paper and paper.acc),
            ("ASR", "asr", paper and paper.asr),
        )
        if _flag(*stats[key], ref)
    ]
    return TableRow(
        row.dataset,
        row.attack,
        row.defense,
        row.variant,
        scale.name,
        tau,
        present,
        *stats["acc"],
        *stats["asr"],
        paper and paper.acc,
        paper and paper.asr,
        paper and paper.source,
        stats["acc_last"][0],
        stats["asr_last"][0],
        *stats["auc"],
        paper_auc,
        [seed for seed in seeds if seed not in records],
        " ".join(flags),
        sorted({ran_on(records[seed]) for seed in present}),
    )


def load_records(results_root: Path, cells: list[Cell]) -> dict[str, dict[str, Any]]:
    """Compact records of ``cells`` that exist under ``results_root/<scale>/cells`` (by cell
    path).
    """
    records = {}
    for cell in cells:
        path = results_root / cell.scale.name / "cells" / f"{cell.path}.json"
        if path.exists():
            records[cell.path] = read_cell(path)
    return records


def seeds_present(results_root: Path, scale: Scale) -> list[int]:
    """The seeds with at least one committed cell at ``scale``, with the scale's default seeds
    (so a row shows its missing seeds as missing); [] when the scale has no cell at all."""
    found = {
        int(path.stem[1:]) for path in (results_root / scale.name / "cells").glob("*/*/*/s*.json")
    }
    return sorted(found | set(scale.default_seeds)) if found else []


def aggregate_table(
    spec: TableSpec, scale: Scale, rows: list[Row], seeds: list[int], results_root: Path
) -> list[TableRow]:
    """Every (row, tau) of ``spec`` at ``scale`` over ``seeds``, from the committed compact
    records.
    """
    out = []
    for row in rows:
        cells = {seed: Cell(row, scale, seed) for seed in seeds}
        found = load_records(results_root, list(cells.values()))
        records = {seed: found[cell.path] for seed, cell in cells.items() if cell.path in found}
        out += [aggregate_row(spec, row, tau, scale, seeds, records) for tau in row.taus]
    return out


def _fmt(mean: float | None, std: float | None, digits: int = 2) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _diff(mean: float | None, paper: float | None) -> str:
    return "-" if mean is None or paper is None else f"{mean - paper:+.2f}"


def table_markdown(spec: TableSpec, scale: Scale, rows: list[TableRow]) -> str:
    """The table as markdown: header with source and convention, one line per row."""
    auc = spec.metric == "auc"
    head = [
        f"# {spec.title} ({spec.source}), scale `{scale.name}`",
        "",
        f"Convention: {CONVENTION}. Rates in %, mean ± sample std over the seeds listed. `!` marks "
        f"a difference from the paper above {FLAG_POINTS:g} points or 2 std.",
        "",
        f"Scale `{scale.name}`: {scale.describe()}.",
        "",
    ]
    columns = [
        "data set",
        "attack",
        "defense",
        "variant",
        "tau",
        "seeds",
        "ACC",
        "ASR",
        "paper ACC",
        "paper ASR",
        "Δ ACC",
        "Δ ASR",
        "mean ACC / ASR, last 30 rounds",
        "source",
        "!",
        "ran on",
    ]
    if auc:
        columns[6:8] = ["AUC", "paper AUC"]
        columns = columns[:8] + ["source", "ran on"]
    lines = head + ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        seeds = ",".join(map(str, r.seeds)) or "none yet"
        ident = [r.dataset, r.attack, r.defense, r.variant or "-", f"{r.tau:g}", seeds]
        if auc:
            cells = [
                _fmt(r.auc_mean, r.auc_std, 3),
                "-" if r.paper_auc is None else f"{r.paper_auc:.2f}",
                "Figure 3" if r.paper_auc is not None else "-",
                "; ".join(r.ran_on) or "-",
            ]
        else:
            cells = [
                _fmt(r.acc_mean, r.acc_std),
                _fmt(r.asr_mean, r.asr_std),
                "-" if r.paper_acc is None else f"{r.paper_acc:.2f}",
                "-" if r.paper_asr is None else f"{r.paper_asr:.2f}",
                _diff(r.acc_mean, r.paper_acc),
                _diff(r.asr_mean, r.paper_asr),
                "-"
                if r.acc_last30_mean is None
                else f"{r.acc_last30_mean:.2f} / {r.asr_last30_mean:.2f}",
                r.paper_source or "-",
                r.flag,
                "; ".join(r.ran_on) or "-",
            ]
        lines.append("| " + " | ".join(ident + cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(
    spec: TableSpec, scale: Scale, rows: list[TableRow], results_root: Path
) -> list[Path]:
    """``results/<scale>/<table>.json``, ``.csv`` and ``.md``."""
    base = results_root / scale.name / spec.name
    payload = {
        "schema": "fliplab.reproduce.table/1",
        "table": spec.name,
        "title": spec.title,
        "source": spec.source,
        "scale": scale.name,
        "scale_settings": scale.describe(),
        "convention": CONVENTION,
        "units": "percent",
        "rows": [asdict(r) for r in rows],
    }
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(rows[0])) if rows else ["dataset"])
    writer.writeheader()
    for r in rows:
        writer.writerow(
            {k: (" ".join(map(str, v)) if isinstance(v, list) else v) for k, v in asdict(r).items()}
        )
    return [
        write_text_atomic(os.fspath(base) + ".json", json.dumps(payload, indent=1) + "\n"),
        write_text_atomic(os.fspath(base) + ".csv", buffer.getvalue()),
        write_text_atomic(os.fspath(base) + ".md", table_markdown(spec, scale, rows)),
    ]
