"""README sections generated from results/ agree with results/, and the generator reports what it
reads.
"""

from __future__ import annotations

import json
from pathlib import Path

from deepfl.reproduce.compact import CELL_SCHEMA, write_cell
from figures.__main__ import main as figures_main
from figures.readme import reasons_out_of_date, render, reproduction_status, stale_sections

REPO = Path(__file__).resolve().parents[2]


def test_readme_generated_sections_match_committed_results() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "<!-- BEGIN reproduction-status -->" in readme
    assert stale_sections(readme, REPO / "results") == []
    assert reasons_out_of_date(REPO / "results") == []


def _record(defense: str, seed: int, final_acc: float, final_asr: float) -> dict:
    rounds = list(range(1, 41))
    return {
        "schema": CELL_SCHEMA,
        "taus": [0.0, 0.3],
        "rounds": rounds,
        "cell": {
            "scale": "cpu-small",
            "dataset": "mnist",
            "attack": "continuous",
            "defense": defense,
            "variant": "",
            "mode": "",
            "setting": "",
            "seed": seed,
        },
        "acc": [[0.5] * 39 + [final_acc]] * 2,
        "asr": [[0.5] * 39 + [final_asr]] * 2,
        "final": {"acc": [final_acc] * 2, "asr": [final_asr] * 2},
    }


def test_status_rows_mean_std_difference_and_reasons(tmp_path: Path) -> None:
    cells = tmp_path / "cpu-small" / "cells" / "mnist" / "continuous"
    for seed, (acc, asr) in enumerate([(0.97, 0.99), (0.99, 1.0), (0.98, 0.98)]):
        write_cell(cells / "fedavg" / f"s{seed}.json", _record("fedavg", seed, acc, asr))
    write_cell(cells / "krum" / "s0.json", _record("krum", 0, 0.90, 0.50))
    (tmp_path / "reasons.json").write_text(
        json.dumps(
            {
                "cpu-small/table2/mnist/continuous/krum": "measured: Krum keeps an attacker (see "
                "results/x.md)"
            }
        )
    )
    text = reproduction_status(tmp_path)
    fedavg = next(
        line for line in text.splitlines() if "| table2 | mnist | continuous | fedavg |" in line
    )
    # mean of 97/99/98 = 98.00, sample std 1.00; paper Table 2 No Defense 98.71 / 100.00.
    assert (
        "98.00 ± 1.00 / 99.00 ± 1.00" in fedavg
        and "98.71 / 100.00" in fedavg
        and "-0.7 / -1.0" in fedavg
    )
    krum = next(
        line for line in text.splitlines() if "| table2 | mnist | continuous | krum |" in line
    )
    assert "90.00 / 50.00" in krum and "measured: Krum keeps an attacker" in krum
    assert "Rows not yet run at `cpu-small`:" in text


def test_render_replaces_only_registered_sections(tmp_path: Path) -> None:
    readme = (
        "intro\n<!-- BEGIN reproduction-status -->\nold\n<!-- END reproduction-status -->\n<!-- "
        "BEGIN other -->\nkept\n<!-- END other -->\n"
    )
    rendered = render(readme, tmp_path)
    assert (
        "old" not in rendered
        and "No deep results are committed yet." in rendered
        and "kept" in rendered
    )
    assert stale_sections(readme, tmp_path) == ["reproduction-status"]
    path = tmp_path / "README.md"
    path.write_text(readme)
    assert (
        figures_main(["readme", "--readme", str(path), "--results", str(tmp_path), "--check"]) == 1
    )
    assert figures_main(["readme", "--readme", str(path), "--results", str(tmp_path)]) == 0
    assert (
        figures_main(["readme", "--readme", str(path), "--results", str(tmp_path), "--check"]) == 0
    )


def test_a_reason_written_before_a_seed_landed_is_reported(tmp_path: Path) -> None:
    cells = tmp_path / "cpu-small" / "cells" / "mnist" / "continuous"
    for seed in (0, 1):
        write_cell(cells / "krum" / f"s{seed}.json", _record("krum", seed, 0.90, 0.50))
    write_cell(cells / "rfa" / "s0.json", _record("rfa", 0, 0.98, 1.0))  # not flagged: no reason
    reasons = tmp_path / "reasons.json"
    key = "cpu-small/table2/mnist/continuous/krum"
    reasons.write_text(json.dumps({key: "measured: the cell keeps an attacker. One seed."}))
    [problem] = reasons_out_of_date(tmp_path)
    assert problem.startswith(key) and "says One, the row has Two" in problem
    reasons.write_text(json.dumps({key: "measured in seed 0 only (One seed), in both: Two seeds."}))
    assert reasons_out_of_date(tmp_path) == []
    reasons.write_text(json.dumps({key: "measured: the cell keeps an attacker."}))
    assert "says no count" in reasons_out_of_date(tmp_path)[0]
    readme = tmp_path / "README.md"
    readme.write_text("<!-- BEGIN reproduction-status -->\n<!-- END reproduction-status -->\n")
    figures_main(["readme", "--readme", str(readme), "--results", str(tmp_path)])
    check = ["readme", "--readme", str(readme), "--results", str(tmp_path), "--check"]
    assert figures_main(check) == 1  # sections are current, the reason is not
