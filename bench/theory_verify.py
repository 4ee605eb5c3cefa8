"""Benchmark of ``python -m theory.verify --round R``: wall and CPU time per phase, and the threads'
share.

Usage:  python bench/theory_verify.py [--round 50] [--attack continuous|single-shot]
[--compare-threads]

Runs the command's phases in this process (pre-training from the cache, the twin run, the one-round
probe, the theory analysis) and prints, per phase, the wall time and the CPU time of the process
(all threads). The twin runs its no-defense twin in a background thread
(``linear_fl.twin.run_twin``); the CPU of the main thread and of the background thread is printed
separately. On a shared machine the wall time depends on the load, so the last line also gives the
CPU time and the length of the critical path (the sequential phases plus the busier twin thread's
CPU): about what the command takes on two free cores (a lower bound: waits between the threads are
not counted). ``--compare-threads`` also runs the twin in one thread and prints the 2-thread
speed-up measured in this run (the models are checked to be bitwise the same). Timings, not
assertions.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

from linear_fl.probe import one_round_probe
from linear_fl.twin import Setup, TwinResult, prepare, run_twin
from theory.verify import build_parser as verify_parser
from theory.verify import make_config
from theory.verify_protocol import DEFAULT_METRICS_TAU, DEFAULT_TAUS, analyse_round, probe_inputs


class Clock:
    """Wall, process-CPU and this-thread-CPU seconds since the last ``lap``."""

    def __init__(self) -> None:
        self.last = self.now()

    @staticmethod
    def now() -> tuple[float, float, float]:
        return time.perf_counter(), time.process_time(), time.thread_time()

    def lap(self) -> tuple[float, float, float]:
        now = self.now()
        wall, cpu, main = (a - b for a, b in zip(now, self.last, strict=True))
        self.last = now
        return wall, cpu, main


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--round", type=int, default=50)
    ap.add_argument("--attack", choices=("continuous", "single-shot"), default="continuous")
    ap.add_argument(
        "--compare-threads", action="store_true", help="also time the twin in one thread"
    )
    args = ap.parse_args()
    print(
        f"CPUs visible: {len(os.sched_getaffinity(0))}; load average before: "
        f"{os.getloadavg()[0]:.1f}; BLAS threads: {os.environ['OPENBLAS_NUM_THREADS']}"
    )
    clock = Clock()
    setup, twin, phases = timed_phases(args.round, args.attack, clock)
    for name, (wall, cpu, main_cpu) in phases.items():
        print(f"  {name:9s} wall {wall:6.1f} s  CPU {cpu:6.1f} s  (main thread {main_cpu:5.1f} s)")
    wall, cpu = (sum(p[i] for p in phases.values()) for i in (0, 1))
    twin_main, twin_cpu = phases["twin"][2], phases["twin"][1]
    critical = cpu - twin_cpu + max(twin_main, twin_cpu - twin_main)
    print(
        f"twin threads: main {twin_main:.1f} s CPU, background {twin_cpu - twin_main:.1f} s CPU; "
        f"load average after: {os.getloadavg()[0]:.1f}"
    )
    if args.compare_threads:
        compare_one_thread(setup, twin, args.round, phases["twin"][0], clock)
    print(
        f"theory.verify --round {args.round} ({args.attack}): wall {wall:.1f} s, CPU {cpu:.1f} s, "
        f"critical path {critical:.1f} s CPU (about the wall time on 2 free cores; target 30 s)"
    )
    return 0


def timed_phases(
    rounds: int, attack: str, clock: Clock
) -> tuple[Setup, TwinResult, dict[str, tuple[float, float, float]]]:
    """``theory.verify``'s phases (prepare, twin run, one-round probe, analysis), each timed as
    (wall, process CPU, main-thread CPU) seconds."""
    verify_args = verify_parser().parse_args(["--round", str(rounds), "--attack", attack])
    phases: dict[str, tuple[float, float, float]] = {}
    setup = prepare(make_config(verify_args))
    phases["prepare"] = clock.lap()
    twin = run_twin(setup, rounds, progress=False, evaluate=False)
    phases["twin"] = clock.lap()
    raw = one_round_probe(
        setup, twin.nodef.globals[rounds], rounds + 1,
        warm=twin.defense.inversions[rounds - 1].warm_starts(),
    )  # fmt: skip
    phases["probe"] = clock.lap()
    analyse_round(
        setup,
        twin.nodef.globals[rounds],
        twin.defense.globals[rounds],
        probe_inputs(raw),
        list(DEFAULT_TAUS),
        DEFAULT_METRICS_TAU[attack],
        "F-hat",
        0.05,
        rounds + 1,
        bool(raw.poisoned),
    )
    phases["analysis"] = clock.lap()
    return setup, twin, phases


def compare_one_thread(
    setup: Setup, twin: TwinResult, rounds: int, twin_wall: float, clock: Clock
) -> None:
    """The twin run again in one thread: its wall time, and whether its models are bitwise the
    same as the threaded run's."""
    clock.lap()
    single = run_twin(setup, rounds, progress=False, evaluate=False, threads=1)
    one_wall, one_cpu, _ = clock.lap()
    same = all(
        np.array_equal(a, b)
        for a, b in zip(single.defense.globals, twin.defense.globals, strict=True)
    )
    print(
        f"twin in one thread: wall {one_wall:.1f} s, CPU {one_cpu:.1f} s; bitwise the same "
        f"models: {same}"
    )
    print(f"2-thread/1-thread twin speed-up: {one_wall / twin_wall:.2f}x (wall, this load)")


if __name__ == "__main__":
    sys.exit(main())
