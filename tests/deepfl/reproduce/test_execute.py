"""Which cells the driver gathers into one population of seeds (--batch-seeds), and which run
folders it refuses to reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepfl.reproduce.compact import CELL_SCHEMA
from deepfl.reproduce.execute import (
    CellJob,
    SeedBatch,
    batch_seeds,
    cell_argv,
    population_argv,
    run_job,
    stale_result,
    stale_run,
)

EXECUTION = ("--device", "cpu", "--threads", "1")


def job(root: Path, row: str, seed: int, state: str = "fresh") -> CellJob:
    run_dir = root / row / f"s{seed}"
    if state != "fresh":
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text("{}")
    if state == "finished":
        (run_dir / "summary.json").write_text("{}")
    argv = ["--preset", "micro", "--seed", str(seed), "--set", "run.progress=false"]
    return CellJob(
        f"{row}/s{seed}", {}, [*argv, "--out", str(run_dir)], str(run_dir), "", 1.0, EXECUTION
    )


def test_fresh_seeds_of_a_row_run_as_one_population(tmp_path: Path) -> None:
    jobs = [job(tmp_path, "krum", seed) for seed in (0, 1, 2)] + [job(tmp_path, "rfa", 0)]
    items = batch_seeds(jobs)
    assert isinstance(items[0], SeedBatch) and items[1] == jobs[3]
    assert population_argv(items[0]) == [
        "--preset",
        "micro",
        "--seeds",
        "0",
        "1",
        "2",
        "--set",
        "run.progress=false",
        "--out",
        str(tmp_path / "krum" / "s{seed}"),
    ]


def test_started_seeds_resume_together_and_mixed_rows_run_alone(tmp_path: Path) -> None:
    started = [job(tmp_path, "krum", seed, "started") for seed in (0, 1)]
    finished = job(tmp_path, "krum", 2, "finished")
    [batch, single] = batch_seeds([*started, finished])
    assert isinstance(batch, SeedBatch) and batch.jobs == tuple(started) and single == finished
    assert population_argv(batch) == ["--resume", *(job.run_dir for job in started), *EXECUTION]
    mixed = [job(tmp_path, "rfa", 0, "started"), job(tmp_path, "rfa", 1)]
    assert batch_seeds(mixed) == mixed


def test_workers_do_not_outlive_a_killed_driver(tmp_path: Path) -> None:
    """A driver killed with SIGKILL (no cleanup at all) takes its cell workers with it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    driver = (
        "import time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from multiprocessing import get_context\n"
        "from deepfl.reproduce.execute import exit_with_driver\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(1, mp_context=get_context('spawn'),"
        " initializer=exit_with_driver)\n"
        "    print(pool.submit(__import__('os').getpid).result(), flush=True)\n"
        "    time.sleep(60)\n"
    )
    script = tmp_path / "driver.py"
    script.write_text(driver)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    worker = int(process.stdout.readline())
    os.kill(worker, 0)  # alive while the driver is
    process.kill()
    process.wait()
    for _ in range(100):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{worker}/stat") as stat:  # a zombie is gone for our purpose
            if stat.read().split(")")[-1].split()[0] == "Z":
                return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError(f"worker {worker} outlived its killed driver")


def _store_config(run_dir: Path, argv: list[str]) -> None:
    """Write the config ``argv`` resolves to as ``run_dir/config.json``, as deepfl.run does."""
    import json

    from deepfl.run import build_parser, config_from_args

    run_dir.mkdir(parents=True, exist_ok=True)
    config = config_from_args(build_parser().parse_args(argv)).to_dict()
    (run_dir / "config.json").write_text(json.dumps(config))


def test_a_run_folder_of_another_config_is_neither_resumed_nor_compacted(tmp_path: Path) -> None:
    cell = job(tmp_path, "krum", 0)
    older = [*cell.argv[:-2], "--set", "benign.lr=0.5", "--out", cell.run_dir]
    _store_config(Path(cell.run_dir), older)
    (Path(cell.run_dir) / "summary.json").write_text("{}")  # finished, at the old setting
    assert "benign.lr (run folder 0.5, cell" in (stale_run(cell) or "")
    outcome = run_job(cell)
    assert not outcome.ok and "another config" in outcome.message and "--force" in outcome.message
    assert not (tmp_path / "krum" / "s0.json").exists()


def test_execution_settings_do_not_make_a_run_folder_stale(tmp_path: Path) -> None:
    cell = job(tmp_path, "krum", 0)
    other_threads = [*cell.argv[:-2], "--set", "run.threads=2", "--out", cell.run_dir]
    _store_config(Path(cell.run_dir), other_threads)
    assert stale_run(cell) is None


def test_a_resumed_cell_runs_with_this_commands_device_and_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A started run folder keeps the threads it was started with in its config; resuming it must
    still follow this command's --threads and --device (a folder started with 2 threads, resumed
    beside another cell on 2 cores, ran 3x slower than its neighbour)."""
    from deepfl.reproduce import execute

    started = job(tmp_path, "krum", 0, "started")
    calls: list[list[str]] = []

    def recording_invoke(argv: list[str], log: Path) -> int:
        calls.append(argv)
        return 1  # stop before compacting: only the command matters here

    monkeypatch.setattr(execute, "stale_run", lambda job: None)
    monkeypatch.setattr(execute, "_invoke", recording_invoke)
    run_job(started)
    assert calls == [["--resume", started.run_dir, *EXECUTION]]


def test_a_fresh_cell_starts_with_its_own_flags_and_a_started_one_resumes(tmp_path: Path) -> None:
    fresh, started = job(tmp_path, "krum", 0), job(tmp_path, "krum", 1, "started")
    assert cell_argv(fresh) == fresh.argv
    assert cell_argv(started) == ["--resume", started.run_dir, *EXECUTION]


def test_a_committed_result_of_another_config_is_reported_stale(tmp_path: Path) -> None:
    import json

    result = tmp_path / "results" / "krum" / "s0.json"
    cell = job(tmp_path, "krum", 0)
    cell = CellJob(cell.path, {}, cell.argv, cell.run_dir, str(result), 1.0)
    assert stale_result(cell) is None  # nothing committed yet
    older = [*cell.argv[:-2], "--set", "run.rounds=7", "--out", cell.run_dir]
    _store_config(tmp_path / "older", older)
    result.parent.mkdir(parents=True)
    stored = json.loads((tmp_path / "older" / "config.json").read_text())
    result.write_text(json.dumps({"schema": CELL_SCHEMA, "config": stored}))
    assert "run.rounds (result 7, cell" in (stale_result(cell) or "")
    current = {**stored, "run": {**stored["run"], "rounds": 3}}
    result.write_text(json.dumps({"schema": CELL_SCHEMA, "config": current}))
    assert stale_result(cell) is None


def test_an_unreadable_run_config_is_reported_not_raised(tmp_path: Path) -> None:
    cell = job(tmp_path, "krum", 0, "started")
    (Path(cell.run_dir) / "config.json").write_text("{not json")
    assert stale_run(cell) == "its config can no longer be read"
