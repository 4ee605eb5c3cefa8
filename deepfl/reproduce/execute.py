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
import ctypes
import io
import json
import os
import shutil
import signal
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from deepfl.io import read_jsonl
from deepfl.reproduce.compact import compact_run, copy_run_triggers, read_cell, write_cell
from deepfl.reproduce.grid import Cell
from deepfl.resume import config_differences

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
    # deepfl.run execution flags (--device, --threads) of this command, given to a resumed run
    # too: its folder's stored config keeps the values it was started with
    execution: tuple[str, ...] = ()


@dataclass(frozen=True)
class CellOutcome:
    """How a cell ended. ``rounds_before``: the rounds its metrics.jsonl held when this worker
    took it up, so that only the rounds after them count as this command's work (a cell resumed,
    or finished meanwhile by another driver, ran its earlier rounds elsewhere)."""

    path: str
    ok: bool
    seconds: float
    message: str = ""
    rounds_before: int = 0


def rounds_logged(run_dir: Path) -> int:
    """How many rounds a run directory's metrics.jsonl already holds (0 for a fresh cell)."""
    return len(read_jsonl(run_dir / "metrics.jsonl"))


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


# settings that say how a run executes, not what it computes: a run folder made with other values
# still stands for the cell
EXECUTION_ONLY = frozenset({"device", "run.threads", "run.progress", "run.cache_dir"})


def _config_change(job: CellJob, stored: dict[str, Any] | None, label: str) -> str | None:
    """The keys on which ``stored`` (a run's config) differs from the config the cell's flags give
    today, outside :data:`EXECUTION_ONLY`; None when they agree, or when the cell's flags do not
    resolve (``validate`` and ``deepfl.run`` report those)."""
    from deepfl.config import ConfigError
    from deepfl.run import build_parser, config_from_args
    from deepfl.runner import read_as_today

    try:
        wanted = config_from_args(build_parser().parse_args(job.argv)).to_dict()
    except (ConfigError, ValueError):
        return None
    readable = read_as_today(stored) if stored is not None else None
    if readable is None:
        return "its config can no longer be read"
    changed = config_differences(readable, wanted, (label, "cell"), EXECUTION_ONLY)
    return "; ".join(changed[:4]) + (" ..." if len(changed) > 4 else "") if changed else None


def stale_run(job: CellJob) -> str | None:
    """Why the run folder of ``job`` cannot stand for the cell, or None: its ``config.json``
    differs from the config the cell's flags give today (e.g. the scale changed since the folder
    was made). Such a folder is neither resumed nor compacted."""
    stored_path = Path(job.run_dir) / "config.json"
    if not stored_path.exists():
        return None
    try:
        stored = json.loads(stored_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = None
    return _config_change(job, stored if isinstance(stored, dict) else None, "run folder")


def stale_result(job: CellJob) -> str | None:
    """Why the committed compact result of ``job`` no longer stands for the cell, or None (no
    result, or made with today's config): as :func:`stale_run`, for the config the record
    stores (read with :func:`~deepfl.reproduce.compact.read_cell`)."""
    path = Path(job.result_path)
    if not path.exists():
        return None
    try:
        stored = read_cell(path).get("config")
    except ValueError:  # ResultFileError: unreadable, or not a cell record
        stored = None
    return _config_change(job, stored, "result")


def cell_argv(job: CellJob) -> list[str]:
    """The ``deepfl.run`` flags that run ``job`` now: ``--resume`` of its folder with this
    command's execution flags once the folder is started, else the cell's flags for a fresh run."""
    run_dir = Path(job.run_dir)
    if (run_dir / "config.json").exists():
        return ["--resume", str(run_dir), *job.execution]
    return list(job.argv)


def run_job(job: CellJob) -> CellOutcome:
    """Run or resume one cell, then write its compact result. Runs inside a worker process."""
    start = time.perf_counter()
    run_dir = Path(job.run_dir)
    logging_root = run_dir.parent
    logging_root.mkdir(parents=True, exist_ok=True)
    log = logging_root / f"{run_dir.name}.{LOG_NAME}"
    stale = stale_run(job)
    if stale is not None:
        message = f"{run_dir} was made with another config ({stale}); move it away or pass --force"
        return CellOutcome(job.path, False, time.perf_counter() - start, message)
    before = rounds_logged(run_dir)
    code = 0 if (run_dir / "summary.json").exists() else _invoke(cell_argv(job), log)
    return _compact(job, code, log, start, before)


@dataclass(frozen=True)
class SeedBatch:
    """Cells of one row that differ only in the seed, run as one ``deepfl.population``
    (``--batch-seeds``)."""

    jobs: tuple[CellJob, ...]

    @property
    def weight(self) -> float:
        return sum(job.weight for job in self.jobs)


def batch_seeds(jobs: list[CellJob]) -> list[CellJob | SeedBatch]:
    """``jobs`` with the cells of each row gathered into a :class:`SeedBatch` where they can run
    as one population (all fresh, or all started and unfinished); the rest stay single."""
    rows: dict[str, list[CellJob]] = {}
    for job in jobs:
        rows.setdefault(str(Path(job.run_dir).parent), []).append(job)
    items: list[CellJob | SeedBatch] = []
    for members in rows.values():
        ready = [job for job in members if not (Path(job.run_dir) / "summary.json").exists()]
        started = {(Path(job.run_dir) / "config.json").exists() for job in ready}
        if len(ready) > 1 and len(started) == 1:
            items.append(SeedBatch(tuple(ready)))
            items += [job for job in members if job not in ready]
        else:
            items += members
    return items


def population_argv(batch: SeedBatch) -> list[str]:
    """``deepfl.run`` flags of ``batch``: ``--resume`` of every folder when they are started,
    else the first cell's flags with ``--seeds`` and an ``--out`` template (``.../s{seed}``)."""
    folders = [Path(job.run_dir) for job in batch.jobs]
    if (folders[0] / "config.json").exists():
        return ["--resume", *map(str, folders), *batch.jobs[0].execution]
    argv = list(batch.jobs[0].argv)
    at = argv.index("--seed")
    seeds = [job.argv[job.argv.index("--seed") + 1] for job in batch.jobs]
    assert all(folder.name == f"s{seed}" for folder, seed in zip(folders, seeds, strict=True))
    argv[at : at + 2] = ["--seeds", *seeds]
    argv[argv.index("--out") + 1] = str(folders[0].parent / "s{seed}")
    return argv


def run_batch(batch: SeedBatch) -> list[CellOutcome]:
    """Run or resume the cells of ``batch`` together, then write each compact result."""
    start = time.perf_counter()
    stale = {job.path: reason for job in batch.jobs if (reason := stale_run(job)) is not None}
    if stale:
        return [
            CellOutcome(
                job.path,
                False,
                time.perf_counter() - start,
                f"not run: a run folder of this batch was made with another config ({stale})",
            )
            for job in batch.jobs
        ]
    root = Path(batch.jobs[0].run_dir).parent
    root.mkdir(parents=True, exist_ok=True)
    log = root / f"{'+'.join(Path(job.run_dir).name for job in batch.jobs)}.{LOG_NAME}"
    before = [rounds_logged(Path(job.run_dir)) for job in batch.jobs]
    code = _invoke(population_argv(batch), log)
    return [
        _compact(job, code, log, start, rows) for job, rows in zip(batch.jobs, before, strict=True)
    ]


def run_item(item: CellJob | SeedBatch) -> list[CellOutcome]:
    """A worker's unit: one cell, or a batch of seeds."""
    return run_batch(item) if isinstance(item, SeedBatch) else [run_job(item)]


def _compact(
    job: CellJob, code: int, log: Path, start: float, rounds_before: int = 0
) -> CellOutcome:
    """The cell's outcome after ``deepfl.run`` exited with ``code``: its compact result written,
    or why not. ``rounds_before``: see :class:`CellOutcome`."""
    run_dir = Path(job.run_dir)
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
    return CellOutcome(job.path, True, time.perf_counter() - start, rounds_before=rounds_before)


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


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def exit_with_driver() -> None:
    """Worker initializer: have the kernel send this worker SIGTERM when the driver dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``). A killed driver then leaves no cell running, whose run folder's
    lock would make the next driver's attempt at that cell fail; the cell resumes from its last
    checkpoint next time. Elsewhere a no-op."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux, or no prctl
        pass


def run_jobs(
    jobs: list[CellJob], workers: int, progress: bool = True, together: bool = False
) -> list[CellOutcome]:
    """Run ``jobs`` on ``workers`` processes; return one outcome per job (failures included).
    ``together``: the seeds of a row run as one population (:func:`batch_seeds`)."""
    outcomes: list[CellOutcome] = []
    bar = tqdm(
        total=sum(job.weight for job in jobs),
        desc="cells",
        unit="cost",
        disable=not progress,
        dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {postfix} [{elapsed}<{remaining}]",
    )
    items = batch_seeds(jobs) if together else list(jobs)
    with ProcessPoolExecutor(
        max_workers=max(1, workers), mp_context=get_context("spawn"), initializer=exit_with_driver
    ) as pool:
        futures = {pool.submit(run_item, item): item for item in items}
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for future in done:
                item = futures[future]
                finished = _outcomes(future, item)
                outcomes += finished
                bar.update(item.weight)
                failed = sum(not o.ok for o in outcomes)
                bar.set_postfix_str(f"{len(outcomes)}/{len(jobs)} cells, {failed} failed")
                for outcome in finished:
                    if not outcome.ok:
                        tqdm.write(f"FAILED {outcome.path}: {outcome.message}")
    bar.close()
    return outcomes


def _outcomes(future: Future[list[CellOutcome]], item: CellJob | SeedBatch) -> list[CellOutcome]:
    """The outcomes of a finished worker unit; a crashed worker fails every cell of the unit."""
    paths = [job.path for job in item.jobs] if isinstance(item, SeedBatch) else [item.path]
    try:
        return future.result()
    except BrokenProcessPool:
        return [
            CellOutcome(path, False, 0.0, "worker process died (out of memory?)") for path in paths
        ]
    except Exception as error:  # noqa: BLE001 - reported, never fatal to the grid
        return [CellOutcome(path, False, 0.0, f"{type(error).__name__}: {error}") for path in paths]


def default_threads(workers: int) -> int:
    """torch threads per cell so that ``workers`` cells share the machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))
