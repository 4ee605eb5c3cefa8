"""The README's oracle-ablation table is built from the committed records and cells, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deepfl.reproduce.compact import CELL_SCHEMA, write_cell
from figures.flip_oracles import ORACLE_DIR, flip_oracles_section, oracle_label
from figures.io import ResultFileError

ROUNDS = list(range(1, 36))  # 10 pre-training rounds, then 25 attack rounds


def _record(defense: str, variant: str, params: dict[str, Any], asr_last: float) -> dict:
    asr = [0.01 * r for r in ROUNDS[:-1]] + [asr_last]
    return {
        "schema": CELL_SCHEMA,
        "taus": [0.0, 0.3],
        "rounds": ROUNDS,
        "phase": ["pretrain"] * 10 + ["attack"] * 25,
        "cell": {
            "scale": "cpu-small",
            "dataset": "mnist",
            "attack": "continuous",
            "defense": defense,
            "variant": variant,
            "seed": 0,
        },
        "config": {"defense": {"client_params": params}, "attack": {"target": 2}},
        "acc": [[0.9] * len(ROUNDS), [0.8] * len(ROUNDS)],
        "asr": [asr, [0.0] * len(ROUNDS)],
        "final": {
            "acc": [0.9, 0.8],
            "asr": [asr_last, 0.0],
            "per_class_acc": [0.95, 0.9, asr_last],
        },
    }


def test_columns_rounds_and_values_come_from_the_records(tmp_path: Path) -> None:
    cells = tmp_path / "cpu-small" / "cells" / "mnist" / "continuous"
    write_cell(cells / "fedavg" / "s0.json", _record("fedavg", "", {}, 0.99))
    write_cell(cells / "flip+paper" / "s0.json", _record("flip", "paper", {"mode": "paper"}, 0.45))
    oracle = tmp_path / ORACLE_DIR
    truth = {"mode": "paper", "inverter": "oracle-ground-truth"}
    write_cell(oracle / "a-truth-s0.json", _record("flip", "truth", truth, 0.095))
    pairs = {"mode": "paper", "oracle_pair_target": 2}
    write_cell(oracle / "b-pair-s0.json", _record("flip", "pair", pairs, 0.30))
    lines = flip_oracles_section(tmp_path).splitlines()
    header = next(line for line in lines if line.startswith("| round |"))
    # own triggers before given triggers, whatever the file names; no fliplab cell: no column
    assert header == (
        "| round | FedAvg | FLIP `paper` | `paper`, backdoor pairs (-> 2) given | "
        "`paper`, oracle-ground-truth triggers |"
    )
    rows = {line.split(" | ")[0]: line for line in lines if line.startswith("| ")}
    assert set(rows) == {
        "| round",
        "| 20",
        "| 30",
        "| 35",
        "| final ACC",
        "| final ACC on class 2 (the target)",
    }
    assert rows["| 35"] == "| 35 | 99.0 | 45.0 | 30.0 | 9.5 |"
    assert rows["| 20"] == "| 20 | 20.0 | 20.0 | 20.0 | 20.0 |"
    assert rows["| final ACC"] == "| final ACC | 90.0 | 90.0 | 90.0 | 90.0 |"  # tau 0, not 0.3
    on_target = "| final ACC on class 2 (the target) | 99.0 | 45.0 | 30.0 | 9.5 |"
    assert (
        rows["| final ACC on class 2 (the target)"] == on_target
    )  # per_class_acc[2], the attack's target


def test_label_names_what_was_given_and_empty_results_say_so(tmp_path: Path) -> None:
    assert oracle_label(_record("flip", "x", {}, 0.0)) == "`fliplab`, no oracle"
    assert flip_oracles_section(tmp_path) == "No oracle ablations are committed yet.\n"
    (tmp_path / ORACLE_DIR).mkdir(parents=True)
    (tmp_path / ORACLE_DIR / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(ResultFileError, match="broken.json"):
        flip_oracles_section(tmp_path)
