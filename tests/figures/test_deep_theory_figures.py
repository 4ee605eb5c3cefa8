"""``python -m figures deep-theory`` and the README's ``deep-theory`` section, from deep-probe JSON
files (synthetic probes written by theory.deep.cli, torch-free)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from figures.__main__ import main
from figures.deep_theory import load_deep_theory_results
from figures.deep_theory_text import deep_theory_section, deep_theory_tables
from figures.readme import render, stale_sections
from theory.deep.cli import deep_payload, samples_path, write_samples
from theory.report import write_report_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "theory"))
from deep_instances import synthetic_state  # noqa: E402


def write_probes(folder: Path) -> None:
    for seed in (0, 1):
        for rnd in (20, 40):
            state = synthetic_state(seed + rnd, features_move=True).with_meta(
                seed=seed, round=rnd, probe_round=rnd + 1
            )
            payload, _, samples = deep_payload(state, [0.0, 0.4], "F-hat", 0.05)
            path = folder / f"s{seed}_r{rnd}.json"
            write_report_json(path, payload)
            write_samples(samples_path(path), samples)


@pytest.mark.slow
def test_deep_theory_command_writes_figures_and_tables(tmp_path):
    write_probes(tmp_path / "results")
    assert main(["deep-theory", str(tmp_path / "results"), "--out", str(tmp_path / "out")]) == 0
    for name in ("deep_loss_bounds.png", "deep_scatter.png", "deep_theory_tables.md"):
        assert (tmp_path / "out" / name).stat().st_size > 1000
    results = load_deep_theory_results([tmp_path / "results"])
    assert [r.key for r in results] == [(0, 20), (0, 40), (1, 20), (1, 40)]
    tables = deep_theory_tables(results)
    assert (
        tables.count("| 1 | 40 |") == 5
    )  # (a): SGD and protocol rows, Theorem 2: one, (b): clean and backdoor
    assert (tmp_path / "out" / "deep_theory_tables.md").read_text() == tables


@pytest.mark.slow
def test_readme_section_is_generated_from_the_results(tmp_path):
    readme = "x\n<!-- BEGIN deep-theory -->\nSTALE-TEXT\n<!-- END deep-theory -->\ny\n"
    assert "No deep-theory probes" in deep_theory_section(tmp_path)
    write_probes(tmp_path / "deep_theory")
    section = deep_theory_section(tmp_path)
    rendered = render(readme, tmp_path)
    assert (
        "STALE-TEXT" not in rendered
        and section in rendered
        and rendered.startswith("x\n")
        and rendered.endswith("y\n")
    )
    assert (
        stale_sections(readme, tmp_path) == ["deep-theory"]
        and stale_sections(rendered, tmp_path) == []
    )
    agg_probes = "4 probes"
    assert agg_probes in section and "0 violations among" in section


def test_bad_files_are_errors(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "fliplab.theory.deep/1", "seed": 0}))
    assert (
        main(["deep-theory", str(bad), "--out", str(tmp_path / "out")]) == 3
    )  # a data error (fldata.cli)
    assert "missing key" in capsys.readouterr().err
