"""The driver's two actions on a list of cells: show them (``--list`` / ``--dry-run``) or run
them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from dataclasses import replace
from pathlib import Path

from deepfl.config import ConfigError
from deepfl.io import read_jsonl
from deepfl.reproduce.execute import (
    CellJob,
    CellOutcome,
    SeedBatch,
    batch_seeds,
    cell_argv,
    default_threads,
    make_job,
    pending,
    population_argv,
    run_jobs,
    stale_result,
)
from deepfl.reproduce.grid import Cell
from deepfl.run import build_parser as run_parser
from deepfl.run import config_from_args


def _jobs(cells: list[Cell], args: argparse.Namespace, results_root: Path) -> list[CellJob]:
    threads = args.threads or default_threads(args.workers)
    extra = [f"run.threads={threads}"]
    execution = ("--device", args.device, "--threads", str(threads))
    jobs = []
    for cell in cells:
        job = replace(make_job(cell, Path(args.runs), results_root, extra), execution=execution)
        job.argv[-2:-2] = ["--device", args.device]
        jobs.append(job)
    return jobs


def validate(jobs: list[CellJob]) -> list[str]:
    """Resolve every cell's config before anything runs; return one message per invalid cell."""
    problems = []
    for job in jobs:
        try:
            config_from_args(run_parser().parse_args(job.argv))
        except (ConfigError, ValueError) as error:
            problems.append(f"{job.path}: {error}")
    return problems


def show(cells: list[Cell], args: argparse.Namespace, results_root: Path) -> int:
    """``--list``: one line per cell with its state; ``--dry-run``: the deepfl.run command that
    would run each now (:func:`~deepfl.reproduce.execute.cell_argv`: a started cell resumes).
    """
    jobs = _jobs(cells, args, results_root)
    for job in jobs:
        done = Path(job.result_path).exists()
        started = (Path(job.run_dir) / "config.json").exists()
        state = "done" if done else "resume" if started else "todo"
        if done and stale_result(job) is not None:
            state = "stale"  # made with another config: rerun with --force
        if args.dry_run and not args.batch_seeds:
            print(f"{'# done: ' if done else ''}python -m deepfl.run {shlex.join(cell_argv(job))}")
        else:
            print(f"{state:7s} {job.path}")
    if args.dry_run and args.batch_seeds:
        for item in batch_seeds(pending(jobs, force=False)):
            argv = population_argv(item) if isinstance(item, SeedBatch) else item.argv
            print(f"python -m deepfl.run {shlex.join(argv)}")
    todo = sum(not Path(job.result_path).exists() for job in jobs)
    print(f"# {len(jobs)} cells, {len(jobs) - todo} done, {todo} to run")
    problems = validate(jobs)
    for problem in problems:
        print(f"# invalid: {problem}")
    return 2 if problems else 0


def run_grid(cells: list[Cell], args: argparse.Namespace, results_root: Path) -> int:
    """Run the cells not yet in ``results_root``; print failures and the driver's overhead."""
    all_jobs = _jobs(cells, args, results_root)
    if not args.force:
        for job in all_jobs:
            if (change := stale_result(job)) is not None:
                print(
                    f"warning: {job.result_path} was made with another config ({change}); "
                    "rerun it with --force"
                )
    jobs = pending(all_jobs, args.force)
    problems = validate(jobs)
    if problems:
        print("error: invalid cells, nothing was run:\n  " + "\n  ".join(problems))
        return 2
    print(
        f"{len(cells)} cells, {len(cells) - len(jobs)} already in {results_root}, {len(jobs)} to "
        f"run on {args.workers} worker(s)"
    )
    start = time.perf_counter()
    outcomes = run_jobs(jobs, args.workers, together=args.batch_seeds)
    wall = time.perf_counter() - start
    failed = [o for o in outcomes if not o.ok]
    for outcome in failed:
        print(f"FAILED {outcome.path}: {outcome.message}")
    own = _own_seconds(jobs, outcomes)
    busy = wall * max(1, min(args.workers, len(jobs)))
    if own > 0 and not failed:
        print(
            f"driver overhead: {100 * (busy - own) / own:.1f}% ({busy:.0f} worker-seconds for "
            f"cells whose own rounds took {own:.0f} s)"
        )
    return 1 if failed else 0


def _own_seconds(jobs: list[CellJob], outcomes: list[CellOutcome]) -> float:
    """The round time (train + aggregate + evaluate, from metrics.jsonl) of the rounds this command
    ran in the cells that finished.

    A cell counts only the rounds after its outcome's ``rounds_before``, counted when the worker
    took it up, not when the grid started: earlier rounds ran under another command (a resumed
    cell, or one that another driver ran while this one waited). Pre-training rounds loaded from
    the cache carry the seconds of the run that made the cache, so they count only when the cell
    itself pre-trained.
    """
    ok = {o.path: o.rounds_before for o in outcomes if o.ok}
    total = 0.0
    for job in jobs:
        run_dir = Path(job.run_dir)
        if job.path not in ok or not (run_dir / "summary.json").exists():
            continue
        cache_hit = (
            json.loads((run_dir / "summary.json").read_text())
            .get("pretrain_cache", {})
            .get("hit", False)
        )
        for row in read_jsonl(run_dir / "metrics.jsonl")[ok[job.path] :]:
            if not (cache_hit and row.get("phase") == "pretrain"):
                total += sum(row.get("seconds", {}).values())
    return total
