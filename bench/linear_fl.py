"""Benchmark of the linear FedAvg engine (linear_fl): twin run timing and vectorisation speed-up.

Usage:  python bench/linear_fl.py [--rounds 50] [--attack continuous|single-shot] [--set key=value
...]
                                  [--blas-threads 1] [--loop-samples 2000]

Prints the time per attack round split into local training, trigger inversion
and evaluation (both twins together), the whole run's wall time, ACC/ASR of
both twins, the recovered-trigger statistics, and the ratio of the vectorised
full-batch gradient step to a straightforward per-sample Python loop of the
same step (the loop is timed on a subsample and scaled linearly; it says so).
Timings, not assertions: nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--attack", choices=("continuous", "single-shot"), default="continuous")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a LinearFLConfig field, value parsed as JSON (e.g. --set lr=0.5)",
    )
    ap.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="OPENBLAS/OMP threads (set before numpy loads; 0 = leave the environment alone). "
        "1 is fastest for these memory-bound matmuls on a busy 2-core machine",
    )
    ap.add_argument(
        "--loop-samples", type=int, default=2000, help="samples timed in the per-sample loop"
    )
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args()


ARGS = _parse()
# This file is named like the package it benchmarks: import the package from the repository root,
# not itself.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))
if ARGS.blas_threads > 0:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.blas_threads)

import time  # noqa: E402

import numpy as np  # noqa: E402

from linear_fl.config import LinearFLConfig  # noqa: E402
from linear_fl.model import mean_gradient  # noqa: E402
from linear_fl.twin import Setup, TwinResult, prepare, run_twin  # noqa: E402


def per_sample_loop_gradient(W: np.ndarray, Xa: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The same mean gradient, one sample at a time (the reference for the speed-up)."""
    G = np.zeros_like(W)
    for x, label in zip(Xa, y, strict=True):
        z = W @ x
        s = np.exp(z - z.max())
        s /= s.sum()
        s[label] -= 1.0
        G += np.outer(s, x)
    return G / Xa.shape[0]


def main() -> int:
    overrides = {"attack": ARGS.attack}
    for item in ARGS.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    cfg = LinearFLConfig.from_dict(overrides)
    print(
        f"BLAS threads: {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}; CPUs visible: "
        f"{os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}"
    )
    t0 = time.perf_counter()
    setup = prepare(cfg)
    t_prepare = time.perf_counter() - t0
    pre = setup.pretrain
    print(
        f"prepare: {t_prepare:.2f} s (pre-training "
        f"{'from cache' if pre.from_cache else 'computed'}: {pre.rounds} rounds, "
        f"converged={pre.converged}); n_B={setup.benign.n}, n_M={setup.malicious.n}"
    )

    t0 = time.perf_counter()
    result = run_twin(setup, ARGS.rounds, progress=not ARGS.no_progress)
    wall = time.perf_counter() - t0
    R = max(ARGS.rounds, 1)
    tm = result.timings
    print(
        f"\ntwin run: {ARGS.rounds} rounds x 2 twins in {wall:.2f} s ({wall / R:.3f} s/round); per "
        f"round: training {tm['training'] / R:.3f} s, inversion {tm['inversion'] / R:.3f} s, "
        f"evaluation {tm['evaluation'] / R:.3f} s"
    )
    print(f"whole run incl. prepare: {wall + t_prepare:.2f} s (target: under 60 s on 2 cores)")

    print_outcome(cfg, result)
    time_training_step(setup)
    return 0


def print_outcome(cfg: LinearFLConfig, result: TwinResult) -> None:
    """Final and peak ACC / ASR of both twins, and how well FLIP's inversion found the trigger."""
    nd, df = result.nodef, result.defense
    print(
        f"\nafter {ARGS.rounds} rounds ({cfg.attack}): no defense ACC {nd.accuracy[-1]:.4f} ASR "
        f"{nd.asr[-1]:.4f} | FLIP ACC {df.accuracy[-1]:.4f} ASR {df.asr[-1]:.4f}   (pre-trained "
        f"ACC {nd.accuracy[0]:.4f})"
    )
    for name, traj in (("no defense", nd), ("FLIP", df)):
        peak = int(np.argmax(traj.asr))
        print(
            f"  {name}: peak ASR {traj.asr[peak]:.4f} at round {peak} (ACC there "
            f"{traj.accuracy[peak]:.4f}); ASR at rounds 1/5/10/25: "
            + "/".join(f"{traj.asr[r]:.3f}" for r in (1, 5, 10, 25) if r <= ARGS.rounds)
        )
    if df.trigger_details:
        sel = np.array([e.selected_target for e in df.trigger_details])
        top = np.array([e.topk_overlap for e in df.trigger_details])
        iou = np.array([e.iou for e in df.trigger_details])
        print(
            f"inversion: selected the attack target in {np.mean(sel == cfg.target):.0%} of rounds; "
            f"top-k overlap mean {top.mean():.2f} (max {top.max():.2f}); IoU mean "
            f"{iou.mean():.2f}; ||delta||_inf last round {df.trigger_errors[-1]:.3f}"
        )


def time_training_step(setup: Setup) -> None:
    """One full-batch gradient, vectorised against a per-sample Python loop (checked equal)."""
    Xa, y = setup.benign.Xa, setup.benign.y
    W = setup.W0
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        mean_gradient(W, Xa, y)
    t_vec = (time.perf_counter() - t0) / reps
    m = min(ARGS.loop_samples, Xa.shape[0])
    t0 = time.perf_counter()
    G_loop = per_sample_loop_gradient(W, Xa[:m], y[:m])
    t_loop = (time.perf_counter() - t0) * Xa.shape[0] / m
    assert np.allclose(G_loop, mean_gradient(W, Xa[:m], y[:m]))
    print(
        f"\ntraining step (full-batch gradient, n={Xa.shape[0]}): vectorised {t_vec * 1e3:.1f} ms; "
        f"per-sample Python loop {t_loop:.2f} s (timed on {m} samples, scaled "
        f"x{Xa.shape[0] / m:.0f}); speed-up {t_loop / t_vec:.0f}x"
    )


if __name__ == "__main__":
    sys.exit(main())
