"""Run the cells of a grid: skip finished ones, resume killed ones, N at a time, one progress bar.

Each cell runs through ``deepfl.run.main`` -- exactly the code path of ``python -m deepfl.run`` --
inside a worker process of a spawn pool (each worker imports torch once; N workers run N cells at
once, several per GPU with ``--device cuda``). A cell whose compact result already exists under
``results/`` is skipped (``--force`` reruns it); a run directory left by a killed driver is
continued with ``--resume``. A failed cell is reported (its log is in its run directory) and does
not stop the others.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from deepfl.reproduce.compact import compact_run, copy_run_triggers, write_cell
from deepfl.reproduce.grid import Cell

LOG_NAME = "driver.log"


@dataclass(frozen=True)
class CellJob:
    """What a worker needs to run one cell (plain data, picklable across the spawn pool)."""

    path: str  # the cell's relative path (dataset/attack/row/sS)
    identity: dict[str, Any]  # stored in the compact record
    argv: list[str]  # python -m deepfl.run flags for a fresh run
    run_dir: str
    result_path: str
    weight: float  # expected relative cost, for the progress bar's ETA


@dataclass(frozen=True)
class CellOutcome:
    path: str
    ok: bool
    seconds: float
    message: str = ""


def cell_identity(cell: Cell) -> dict[str, Any]:
    row = cell.row
    return {
        "scale": cell.scale.name,
        "dataset": row.dataset,
        "attack": row.attack,
        "defense": row.defense,
        "variant": row.variant,
        "mode": row.mode,
        "setting": row.setting,
        "seed": cell.seed,
    }


def cell_weight(cell: Cell) -> float:
    """Relative cost guess: continuous attackers train 10 epochs every round, FLIP re-inverts each
    round.
    """
    weight = 4.0 if cell.row.attack == "continuous" else 1.0
    if cell.row.defense == "flip":
        weight *= 8.0
    return weight * (6.0 if cell.row.dataset == "cifar10" else 1.0)


def make_job(cell: Cell, runs_root: Path, results_root: Path, extra_sets: list[str]) -> CellJob:
    run_dir = runs_root / cell.scale.name / cell.path
    argv = cell.run_args(str(run_dir))
    for text in extra_sets:
        argv[-2:-2] = ["--set", text]
    return CellJob(
        cell.path,
        cell_identity(cell),
        argv,
        str(run_dir),
        str(results_root / cell.scale.name / "cells" / f"{cell.path}.json"),
        cell_weight(cell),
    )


def _invoke(argv: list[str], log: Path) -> int:
    """``deepfl.run.main(argv)`` with its output captured into ``log``."""
    from deepfl.run import main  # imported in the worker: torch loads once per worker process

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            code = main(argv)
        except BaseException:  # a crash inside a cell must not kill the worker
            buffer.write(traceback.format_exc())
            code = 1
    with log.open("a", encoding="utf-8") as stream:
        stream.write(
            f"$ python -m deepfl.run {' '.join(argv)}\n{buffer.getvalue()}\n(exit {code})\n"
        )
    return code


def run_job(job: CellJob) -> CellOutcome:
    """Run or resume one cell, then write its compact result. Runs inside a worker process."""
    start = time.perf_counter()
    run_dir = Path(job.run_dir)
    logging_root = run_dir.parent
    logging_root.mkdir(parents=True, exist_ok=True)
    log = logging_root / f"{run_dir.name}.{LOG_NAME}"
    if (run_dir / "summary.json").exists():
        code = 0
    elif (run_dir / "config.json").exists():
        code = _invoke(["--resume", str(run_dir)], log)
    else:
        code = _invoke(job.argv, log)
    if code != 0:
        return CellOutcome(
            job.path, False, time.perf_counter() - start, f"deepfl.run exited {code}; see {log}"
        )
    try:
        write_cell(job.result_path, compact_run(run_dir, job.identity))
        copy_run_triggers(run_dir, job.result_path)
    except (OSError, ValueError, KeyError) as error:
        return CellOutcome(
            job.path, False, time.perf_counter() - start, f"compacting failed: {error}"
        )
    return CellOutcome(job.path, True, time.perf_counter() - start)


def pending(jobs: list[CellJob], force: bool) -> list[CellJob]:
    """Jobs still to run; with ``force`` their committed results and run directories are removed
    first.
    """
    todo = []
    for job in jobs:
        if force:
            Path(job.result_path).unlink(missing_ok=True)
            shutil.rmtree(job.run_dir, ignore_errors=True)
        if not Path(job.result_path).exists():
            todo.append(job)
    return todo


def run_jobs(jobs: list[CellJob], workers: int, progress: bool = True) -> list[CellOutcome]:
    """Run ``jobs`` on ``workers`` processes; return one outcome per job (failures included)."""
    outcomes: list[CellOutcome] = []
    bar = tqdm(
        total=sum(job.weight for job in jobs),
        desc="cells",
        unit="cost",
        disable=not progress,
        dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {postfix} [{elapsed}<{remaining}]",
    )
    queue = list(jobs)
    while queue:
        with ProcessPoolExecutor(
            max_workers=max(1, workers), mp_context=get_context("spawn")
        ) as pool:
            futures: dict[Future[CellOutcome], CellJob] = {
                pool.submit(run_job, job): job for job in queue
            }
            queue = []
            remaining = set(futures)
            while remaining:
                done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for future in done:
                    job = futures[future]
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        outcome = CellOutcome(
                            job.path, False, 0.0, "worker process died (out of memory?)"
                        )
                    except Exception as error:  # noqa: BLE001 - reported, never fatal to the grid
                        outcome = CellOutcome(
                            job.path, False, 0.0, f"{type(error).__name__}: {error}"
                        )
                    outcomes.append(outcome)
                    bar.update(job.weight)
                    failed = sum(not o.ok for o in outcomes)
                    bar.set_postfix_str(f"{len(outcomes)}/{len(jobs)} cells, {failed} failed")
                    if not outcome.ok:
                        tqdm.write(f"FAILED {outcome.path}: {outcome.message}")
    bar.close()
    return outcomes


def default_threads(workers: int) -> int:
    """torch threads per cell so that ``workers`` cells share the machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))
