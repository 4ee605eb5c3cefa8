"""The whole GPU workload of a short device window, as one prepared command (issues 13 and 14).

A GPU is lent to some sessions only, for about 15 minutes in all, starts included. This script
spends one window in priority order and leaves everything worth keeping under ``--out`` (the
device tool's ``$OUT``), each step inside its own time limit and all inside ``--budget-s``:

1. ``device.json``: torch and CUDA versions, the GPU's name, ``nvidia-smi -L``, CPU cores.
2. ``bench/deepfl_round.py --compare``: a paper-scale continuous MNIST round, vectorised against
   sequential clients (issue 13's 5x GPU target; last line ``vectorised/sequential speed-up``).
3. ``bench/flip_client.py --compare``: a FLIP round of 6 benign clients, batched against
   per-client inversion (issue 13's 5x GPU target); ``bench/seed_population.py``: 3 seeds' round
   as one population against per-seed vectorised rounds (issue 13.3).
4. A timed paper-scale run with no defense: the driver's ``table2`` FedAvg cell of seed 1, alone on
   the device (issue 13's 30 s target; the wall time includes the cell's start-up).
5. The reproduction grid for the rest of the budget: paper-scale MNIST ``table2``, two drivers at
   once on the device -- FLIP's three modes (issue 17: 3 seeds at the paper's scale) and the
   baselines (issue 14) -- each with ``--workers`` processes. Cells already committed are copied in
   first and skipped; cells cut off by the deadline leave their run folders under
   ``--work``/runs, so the same command run again on the warm machine resumes them.

Everything is written under ``--work`` (an ignored folder of the working tree; on the device it
stays while the machine is warm) and packed into ``--out`` after every step, so a window cut off
still returns the finished steps. The device tool returns at most 8 files, at most 2 folders down,
so ``--out`` holds four: ``gpu_workload.json`` (every step's command, exit, seconds and last line),
``device.json``, ``logs.tar.gz`` and ``cells.tar.gz`` (the new result cells). Back here,
``--unpack`` takes the cells into ``results/`` (never over a committed one).

Before a window, here: the data travels in an ignored folder named in the call's ``carry``
(MNIST is 11 MB; the device reaches no network), and the device's own python3 holds torch,
numpy, scipy, sympy, matplotlib and tqdm:

    mkdir -p .fldata && cp -r "$FLIPLAB_DATA/mnist" .fldata/
    # the device tool's run, carry [".fldata"]:
    export FLIPLAB_DATA=$PWD/.fldata MPLBACKEND=Agg; python3 bench/gpu_workload.py --budget-s 540
    # back here, with the files the call returned:
    python bench/gpu_workload.py --unpack FILES_AT
    python -m deepfl.reproduce table2 --scale paper --aggregate-only

Test the script before a window (the same steps at micro scale on a CPU, about 2 minutes):

    python bench/gpu_workload.py --micro --out /tmp/gpu-micro --work /tmp/gpu-work
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a source checkout (the device has no install)

from deepfl.reproduce.grid import BASELINES  # noqa: E402  (imports no torch)

FLIP_ROWS = ["flip"]
BASELINE_ROWS = list(BASELINES)  # FedAvg, the nine baselines, Multi-Krum and FLAME


@dataclass
class StepOutcome:
    """One step's result in ``gpu_workload.json``."""

    name: str
    command: list[str]
    returncode: int | None  # None: cut off by its time limit
    seconds: float
    limit_s: float
    last_line: str = ""
    notes: dict[str, object] = field(default_factory=dict)


@dataclass
class Plan:
    """What the steps run: the real window (``paper`` scale on the GPU) or a CPU micro test."""

    device: str
    scale: str
    round_args: list[str]
    flip_args: list[str]
    seeds_grid: list[str]
    seeds_args: list[str]
    timed_seed: str = "1"

    @classmethod
    def for_window(cls, device: str, micro: bool) -> Plan:
        if micro:
            tiny_flip = ["warmup_steps=3", "pair_steps=3", "focus_refresh_steps=3"]
            return cls(
                "cpu",
                "ci",
                ["--repeats", "1", "--threads", "1", "--set", "attack.epochs=1"],
                ["--repeats", "1", "--threads", "1", "--pretrain-steps", "5"]
                + [arg for p in tiny_flip for arg in ("--param", p)],
                ["0", "1"],
                ["--seeds", "2", "--repeats", "1", "--threads", "1", "--set", "attack.epochs=1"],
            )
        return cls(
            device,
            "paper",
            ["--repeats", "3", "--threads", "4"],
            ["--repeats", "2", "--threads", "4"],
            ["1", "2", "0"],
            ["--seeds", "3", "--repeats", "2", "--threads", "4"],
        )


def run_step(
    name: str, command: list[str], limit_s: float, work: Path, env: dict[str, str]
) -> StepOutcome:
    """Run ``command`` (its own process group) for at most ``limit_s`` seconds, log to
    ``work/logs/<name>.log``; at the limit the whole group gets SIGTERM, then SIGKILL."""
    started = time.perf_counter()
    with _Pool() as pool:
        pool.start(name, command, work, env)
        code = pool.wait_all(limit_s)[name]
    log_path = work / "logs" / f"{name}.log"
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    return StepOutcome(
        name, command, code, round(time.perf_counter() - started, 2), round(limit_s, 1),
        lines[-1][-300:] if lines else "",
    )  # fmt: skip


def _wait_or_stop(process: subprocess.Popen, limit_s: float) -> int | None:
    try:
        return process.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        return None


def device_info(work: Path, device: str) -> StepOutcome:
    """``device.json``: what the window ran on."""
    started = time.perf_counter()
    import torch

    info: dict[str, object] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
        "requested_device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
        info["memory_gib"] = round(
            torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30, 1
        )
    smi = shutil.which("nvidia-smi")
    if smi:
        info["nvidia_smi"] = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    (work / "device.json").write_text(json.dumps(info, indent=1) + "\n")
    name = str(info.get("device_name", "cpu"))
    return StepOutcome("device", [], 0, round(time.perf_counter() - started, 2), 0.0, name, info)


def driver_command(
    plan: Plan,
    rows: list[str],
    seeds: list[str],
    workers: int,
    work: Path,
    runs: Path,
    total_workers: int | None = None,
) -> list[str]:
    """``python -m deepfl.reproduce table2`` on MNIST for ``rows`` (FLIP in all three modes), the
    CPU cores shared among ``total_workers`` cell processes (default ``workers``)."""
    total_workers = total_workers or workers
    command = [sys.executable, "-m", "deepfl.reproduce", "table2", "--scale", plan.scale]
    command += ["--datasets", "mnist", "--defenses", *rows, "--seeds", *seeds]
    command += ["--workers", str(workers), "--device", plan.device]
    command += ["--threads", str(max(1, (os.cpu_count() or 1) // total_workers))]
    return command + ["--out", str(work / "results"), "--runs", str(runs)]


def seed_results(work: Path, scale: str) -> int:
    """Copy the committed cells of ``scale`` into ``work/results`` (so the driver skips them);
    returns how many."""
    source = ROOT / "results" / scale / "cells"
    target = work / "results" / scale / "cells"
    copied = 0
    for path in sorted(source.rglob("*.json")) if source.is_dir() else []:
        destination = target / path.relative_to(source)
        if not destination.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
            copied += 1
    return copied


def new_cells(work: Path, scale: str) -> list[str]:
    """Cells under ``work/results`` that the repository's ``results/`` does not have yet."""
    root = work / "results" / scale / "cells"
    committed = ROOT / "results" / scale / "cells"
    return sorted(
        path.relative_to(root).as_posix()
        for path in (root.rglob("*.json") if root.is_dir() else [])
        if not (committed / path.relative_to(root)).exists()
    )


def grid_step(
    plan: Plan, work: Path, runs: Path, workers: int, limit_s: float, env: dict[str, str]
) -> StepOutcome:
    """The FLIP and the baseline drivers side by side until ``limit_s``."""
    flip_workers = max(1, workers // 2)
    commands = {
        "grid-flip": driver_command(
            plan, FLIP_ROWS, plan.seeds_grid, flip_workers, work, runs, workers
        ),
        "grid-baselines": driver_command(
            plan,
            BASELINE_ROWS,
            plan.seeds_grid,
            max(1, workers - flip_workers),
            work,
            runs,
            workers,
        ),
    }
    started = time.perf_counter()
    with _Pool() as pool:
        for name, command in commands.items():
            pool.start(name, command, work, env)
        codes = pool.wait_all(limit_s)
    cells = new_cells(work, plan.scale)
    return StepOutcome(
        "grid",
        [],
        0 if all(code == 0 for code in codes.values()) else None,
        round(time.perf_counter() - started, 2),
        round(limit_s, 1),
        f"{len(cells)} new cells",
        {
            "drivers": {name: codes[name] for name in commands},
            "new_cells": {cell: _cell_seconds(work, plan.scale, cell) for cell in cells},
        },
    )


def _cell_seconds(work: Path, scale: str, cell: str) -> float:
    """A finished cell's own run time (training + aggregation + evaluation, from its record);
    with other cells sharing the device it is an upper bound of the cell's time alone."""
    record = json.loads((work / "results" / scale / "cells" / cell).read_text())
    return round(sum(record.get("seconds", {}).values()), 1)


class _Pool:
    """Several step processes at once, each in its own process group, stopped together."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: list = []

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        for log in self.logs:
            log.close()

    def start(self, name: str, command: list[str], work: Path, env: dict[str, str]) -> None:
        """Start ``command`` in its own process group, logging to ``work/logs/<name>.log``."""
        (work / "logs").mkdir(parents=True, exist_ok=True)
        log = open(work / "logs" / f"{name}.log", "w")  # noqa: SIM115 (closed in __exit__)
        self.logs.append(log)
        self.processes[name] = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_all(self, limit_s: float) -> dict[str, int | None]:
        deadline = time.perf_counter() + limit_s
        return {
            name: _wait_or_stop(process, max(1.0, deadline - time.perf_counter()))
            for name, process in self.processes.items()
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=os.environ.get("OUT"), help="what comes back ($OUT)")
    parser.add_argument("--work", default=str(ROOT / "runs" / "gpu"), help="results, logs, runs")
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N (ignored with --micro)")
    parser.add_argument("--budget-s", type=float, default=540.0, help="the whole window's limit")
    parser.add_argument("--workers", type=int, default=8, help="grid processes on the device")
    parser.add_argument("--micro", action="store_true", help="CPU test at micro scale")
    parser.add_argument(
        "--unpack", metavar="DIR", help="here, after a window: take DIR/cells.tar.gz into results/"
    )
    args = parser.parse_args(argv)
    if not args.out and not args.unpack:
        parser.error("--out is required when $OUT is not set")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.unpack:
        return unpack(Path(args.unpack), ROOT / "results")
    plan = Plan.for_window(args.device, args.micro)
    work, out = Path(args.work), Path(args.out)
    deadline = time.perf_counter() + args.budget_s
    for folder in (work / "logs", out):
        folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    outcomes = [device_info(work, plan.device)]
    print(f"device: {outcomes[0].last_line}; {seed_results(work, plan.scale)} committed cells in")
    python = sys.executable
    steps = [
        ("round-compare", [python, "bench/deepfl_round.py", "--compare"], 0.2, plan.round_args),
        ("flip-compare", [python, "bench/flip_client.py", "--compare"], 0.25, plan.flip_args),
        ("seed-population", [python, "bench/seed_population.py"], 0.1, plan.seeds_args),
    ]
    for name, command, share, extra in steps:
        full = command + ["--device", plan.device, *extra]
        outcomes.append(run_step(name, full, share * args.budget_s, work, env))
        report(work, out, plan.scale, outcomes)
    runs = work / "runs"
    timed = driver_command(plan, ["fedavg"], [plan.timed_seed], 1, work, runs)
    outcomes.append(run_step("timed-fedavg", timed, 0.15 * args.budget_s, work, env))
    report(work, out, plan.scale, outcomes)
    left = deadline - time.perf_counter() - 30.0  # 30 s to stop the drivers and pack the results
    if left > 60:
        outcomes.append(grid_step(plan, work, runs, args.workers, left, env))
    report(work, out, plan.scale, outcomes)
    return 0


def report(work: Path, out: Path, scale: str, outcomes: list[StepOutcome]) -> None:
    """What comes back, rewritten after every step (the device tool returns at most 8 files, at
    most 2 folders down): ``gpu_workload.json``, ``device.json``, ``logs.tar.gz`` and
    ``cells.tar.gz`` (the new result cells, as ``<scale>/cells/...`` under ``results/``)."""
    payload = {"schema": "fliplab.gpu_workload/1", "steps": [asdict(o) for o in outcomes]}
    (out / "gpu_workload.json").write_text(json.dumps(payload, indent=1) + "\n")
    shutil.copy2(work / "device.json", out / "device.json")
    with tarfile.open(out / "logs.tar.gz", "w:gz") as archive:
        archive.add(work / "logs", arcname="logs")
    with tarfile.open(out / "cells.tar.gz", "w:gz") as archive:
        for cell in new_cells(work, scale):
            archive.add(work / "results" / scale / "cells" / cell, arcname=f"{scale}/cells/{cell}")
    last = outcomes[-1]
    state = "cut off" if last.returncode is None else f"rc {last.returncode}"
    print(
        f"{last.name}: {state}, {last.seconds:.1f} s of {last.limit_s:.0f}; {last.last_line}",
        flush=True,
    )


def unpack(folder: Path, results: Path) -> int:
    """Copy the result cells of ``folder/cells.tar.gz`` into ``results`` (never over a committed
    cell); print what was taken and what to run next."""
    taken, kept = [], []
    with tarfile.open(folder / "cells.tar.gz", "r:gz") as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[1] != "cells" or ".." in parts:
                raise ValueError(f"{folder / 'cells.tar.gz'}: unexpected member {member.name!r}")
            target = results / member.name
            if target.exists():
                kept.append(member.name)
                continue
            source = archive.extractfile(member)
            assert source is not None
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
            taken.append(member.name)
    print(f"{len(taken)} new cells taken, {len(kept)} already in {results} left as they are")
    for scale in sorted({Path(name).parts[0] for name in taken}):
        print(f"next: python -m deepfl.reproduce table2 --scale {scale} --aggregate-only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
