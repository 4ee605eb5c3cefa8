"""The driver end to end at the ``ci`` scale (2 defenses x 2 seeds, micro runs): run, skip,
aggregate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepfl.io import read_jsonl
from deepfl.machine import cpu_fingerprint
from deepfl.reproduce.__main__ import main
from deepfl.reproduce.compact import read_cell
from deepfl.reproduce.execute import CellJob, CellOutcome

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ci_grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    root = tmp_path_factory.mktemp("grid")
    code = main(
        [
            "table2",
            "--scale",
            "ci",
            "--out",
            str(root / "results"),
            "--runs",
            str(root / "runs"),
            "--workers",
            "2",
        ]
    )
    return root / "results", root / "runs", code


def test_ci_table_runs_end_to_end(ci_grid: tuple[Path, Path, int]) -> None:
    results, runs, code = ci_grid
    assert code == 0
    cells = sorted((results / "ci" / "cells").glob("*/*/*/s*.json"))
    assert [c.relative_to(results / "ci" / "cells").as_posix() for c in cells] == [
        "mnist/continuous/fedavg/s0.json",
        "mnist/continuous/fedavg/s1.json",
        "mnist/continuous/median/s0.json",
        "mnist/continuous/median/s1.json",
    ]
    table = json.loads((results / "ci" / "table2.json").read_text())
    keys = {
        "dataset",
        "attack",
        "defense",
        "variant",
        "scale",
        "tau",
        "seeds",
        "acc_mean",
        "acc_std",
        "asr_mean",
        "asr_std",
        "paper_acc",
        "paper_asr",
    }
    assert all(keys <= set(row) for row in table["rows"])
    assert [row["seeds"] for row in table["rows"]] == [[0, 1], [0, 1]]
    assert (results / "ci" / "table2.md").read_text().count("| mnist | continuous |") == 2


def test_compact_record_matches_the_run(ci_grid: tuple[Path, Path, int]) -> None:
    results, runs, _ = ci_grid
    record = read_cell(results / "ci" / "cells" / "mnist/continuous/median/s1.json")
    metrics = read_jsonl(runs / "ci" / "mnist/continuous/median/s1" / "metrics.jsonl")
    assert record["cell"]["defense"] == "median" and record["config"]["seed"] == 1
    assert record["rounds"] == [row["round"] for row in metrics]
    tau_index = record["taus"].index(0.0)
    assert record["asr"][tau_index] == [round(row["asr"]["0.0"], 6) for row in metrics]
    assert 0.0 <= record["auc"] <= 1.0 and len(record["roc"]["fpr"]) == 101
    # what ran the cell is named in the record and in the table's row
    assert record["device"] == "cpu" and record["device_name"].endswith(" cores")
    # and the CPU's fingerprint, which decides the run's last bits (deepfl.machine)
    assert record["cpu"] == cpu_fingerprint()
    table = json.loads((results / "ci" / "table2.json").read_text())
    assert all(row["ran_on"] == [record["device_name"]] for row in table["rows"])


def test_rerun_skips_finished_cells_and_tables_rebuild_identically(
    ci_grid: tuple[Path, Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    results, runs, _ = ci_grid
    before = (results / "ci" / "table2.json").read_text()
    assert main(["table2", "--scale", "ci", "--out", str(results), "--runs", str(runs)]) == 0
    assert "4 already in" in capsys.readouterr().out
    assert main(["table2", "--scale", "ci", "--out", str(results), "--aggregate-only"]) == 0
    assert (results / "ci" / "table2.json").read_text() == before
    # A run narrowed to one seed and one defense still writes the whole table: the filters pick
    # the cells to run, not the rows and seeds shown (a --seeds 2 grid once wrote a seed-2 table).
    narrowed = ["--seeds", "1", "--defenses", "median", "--runs", str(runs)]
    assert main(["table2", "--scale", "ci", "--out", str(results), *narrowed]) == 0
    assert "1 already in" in capsys.readouterr().out
    assert (results / "ci" / "table2.json").read_text() == before


def test_list_and_dry_run(
    ci_grid: tuple[Path, Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    results, runs, _ = ci_grid
    assert (
        main(["table2", "--scale", "ci", "--out", str(results), "--runs", str(runs), "--list"]) == 0
    )
    out = capsys.readouterr().out
    assert out.count("done ") == 4 and "# 4 cells, 4 done, 0 to run" in out
    assert main(["table1", "--scale", "ci", "--dry-run", "--out", str(results)]) == 0
    out = capsys.readouterr().out
    assert out.count("python -m deepfl.run --preset micro") == 4 and "--attack single-shot" in out


def test_dry_run_prints_the_resume_of_a_started_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run shows what the driver would run: a started cell is resumed, with this command's
    execution flags, not started afresh."""
    common = ["table1", "--scale", "ci", "--out", str(tmp_path / "results")]
    common += ["--runs", str(tmp_path / "runs"), "--threads", "1"]
    assert main([*common, "--list"]) == 0
    first = capsys.readouterr().out.split()[1]  # "todo    dataset/attack/row/sS"
    run_dir = tmp_path / "runs" / "ci" / first
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    assert main([*common, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"python -m deepfl.run --resume {run_dir} --device cpu --threads 1" in out
    assert out.count("python -m deepfl.run --preset micro") == 3


def test_a_failing_cell_is_reported_and_the_others_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Plant a run directory whose config.json is damaged: that cell's resume fails, the other cell
    # still runs.
    runs = tmp_path / "runs"
    broken = runs / "ci" / "mnist/single-shot/fedavg/s0"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    code = main(
        [
            "table1",
            "--scale",
            "ci",
            "--defenses",
            "fedavg",
            "--out",
            str(tmp_path / "results"),
            "--runs",
            str(runs),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1 and "FAILED mnist/single-shot/fedavg/s0" in out
    assert (tmp_path / "results" / "ci" / "cells" / "mnist/single-shot/fedavg/s1.json").exists()


def test_batched_seeds_make_the_same_cells(ci_grid: tuple[Path, Path, int], tmp_path: Path) -> None:
    """--batch-seeds: each row's two seeds run as one population; the cells are complete and
    agree with the cells run one by one (float rounding apart; run.vectorise is on in them)."""
    results, _, _ = ci_grid
    argv = ["table2", "--scale", "ci", "--out", str(tmp_path / "res"), "--runs", str(tmp_path)]
    assert main([*argv, "--batch-seeds", "--workers", "2"]) == 0
    logs = sorted(p.name for p in (tmp_path / "ci/mnist/continuous/median").glob("*.log"))
    assert logs == ["s0+s1.driver.log"]
    for cell in ("fedavg/s0", "fedavg/s1", "median/s0", "median/s1"):
        batched = read_cell(tmp_path / "res/ci/cells/mnist/continuous" / f"{cell}.json")
        alone = read_cell(results / "ci/cells/mnist/continuous" / f"{cell}.json")
        assert batched["config"]["run"]["vectorise"] is True
        assert batched["config"]["seed"] == alone["config"]["seed"]
        assert batched["rounds"] == alone["rounds"]
        for got, want in zip(batched["final"]["acc"], alone["final"]["acc"], strict=True):
            assert got == pytest.approx(want, abs=0.03)


def _fake_cell(tmp_path: Path, rounds_logged: int, finished: bool) -> CellJob:
    """A cell folder whose metrics.jsonl holds ``rounds_logged`` rounds of 11 s each."""
    run_dir = tmp_path / "cell"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    if finished:
        (run_dir / "summary.json").write_text(json.dumps({"pretrain_cache": {"hit": False}}))
    _log_rounds(run_dir, rounds_logged)
    return CellJob("m/c/fedavg/s0", {}, [], str(run_dir), str(tmp_path / "s0.json"), 1.0)


def _log_rounds(run_dir: Path, count: int) -> None:
    rounds = [{"round": r, "seconds": {"train": 10.0, "evaluate": 1.0}} for r in range(count)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds))


def _run_without_deepfl(
    job: CellJob, monkeypatch: pytest.MonkeyPatch, rounds_after: int
) -> CellOutcome:
    """``run_job`` with deepfl.run replaced by a fake that logs up to ``rounds_after`` rounds and
    finishes the folder, and with compacting skipped."""
    from deepfl.reproduce import execute

    def fake_invoke(argv: list[str], log: Path) -> int:
        _log_rounds(Path(job.run_dir), rounds_after)
        (Path(job.run_dir) / "summary.json").write_text(json.dumps({}))
        return 0

    monkeypatch.setattr(execute, "stale_run", lambda job: None)
    monkeypatch.setattr(execute, "_invoke", fake_invoke)
    monkeypatch.setattr(execute, "write_cell", lambda path, record: None)
    monkeypatch.setattr(execute, "compact_run", lambda run_dir, identity: {})
    monkeypatch.setattr(execute, "copy_run_triggers", lambda run_dir, path: None)
    return execute.run_job(job)


def test_overhead_counts_only_the_rounds_this_command_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed cell's earlier rounds ran under another command: the driver's overhead line must
    not count them as this command's work (it printed -97% for a cell resumed at round 63 of 70)."""
    from deepfl.reproduce.driver import _own_seconds
    from deepfl.reproduce.execute import rounds_logged

    job = _fake_cell(tmp_path, rounds_logged=2, finished=False)
    outcome = _run_without_deepfl(job, monkeypatch, rounds_after=3)
    assert outcome.ok and outcome.rounds_before == 2
    assert _own_seconds([job], [outcome]) == pytest.approx(11.0)
    assert rounds_logged(tmp_path / "fresh") == 0


def test_overhead_counts_the_rounds_when_the_worker_starts_the_cell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rounds are counted when a worker takes the cell up, not when the grid starts: a cell that
    another driver finished while this one waited is no work of this command (counted at grid
    start, the overhead line went negative, -32.6%, when two drivers shared a cell)."""
    from deepfl.reproduce.driver import _own_seconds

    job = _fake_cell(tmp_path, rounds_logged=3, finished=True)
    outcome = _run_without_deepfl(job, monkeypatch, rounds_after=3)
    assert outcome.ok and outcome.rounds_before == 3
    assert _own_seconds([job], [outcome]) == 0.0
