"""Which cells the driver gathers into one population of seeds (--batch-seeds)."""

from __future__ import annotations

from pathlib import Path

from deepfl.reproduce.execute import CellJob, SeedBatch, batch_seeds, population_argv


def job(root: Path, row: str, seed: int, state: str = "fresh") -> CellJob:
    run_dir = root / row / f"s{seed}"
    if state != "fresh":
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text("{}")
    if state == "finished":
        (run_dir / "summary.json").write_text("{}")
    argv = ["--preset", "micro", "--seed", str(seed), "--set", "run.progress=false"]
    return CellJob(f"{row}/s{seed}", {}, [*argv, "--out", str(run_dir)], str(run_dir), "", 1.0)


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
    assert population_argv(batch) == ["--resume", *(job.run_dir for job in started)]
    mixed = [job(tmp_path, "rfa", 0, "started"), job(tmp_path, "rfa", 1)]
    assert batch_seeds(mixed) == mixed
