"""Benchmark: the client training of one paper-scale continuous MNIST round for K seeds, batched
as one population (deepfl.population) against each seed's round on its own, interleaved.

Workload: K runs of the paper's round (100 clients, Dirichlet 0.5, 10 per round = 4 attackers x
10 poison epochs + 6 benign x 1 epoch, deepfl_round.py's config), seeds 0..K-1, so K x 10
clients. Three ways, each repetition in a rotated order, medians reported:

- ``population``: ``deepfl.population.train_population``, one batched call per group (attackers,
  benign clients) over all K runs;
- ``per-seed vectorised``: each run's own vectorised round (``run.vectorise``), K after another;
- ``sequential``: each run's clients one after another.

Also printed: the batched steps of each (the bound where a step's cost is a fixed launch
overhead, as on a GPU) and the largest per-client relative difference of the updates between the
three (float32 rounding only; over the attackers' 10 poison epochs local SGD amplifies it, see
``bench/deepfl_round.py --compare``'s perturbed-start line). Last line:
``population/per-seed speed-up: X.XXx`` (against per-seed vectorised rounds).

    FLIPLAB_DATA=/work/shared/data python bench/seed_population.py --seeds 3 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from deepfl_round import paper_round_config, synchronize  # noqa: E402 (bench/ is sys.path[0])

from deepfl.config import from_dict  # noqa: E402
from deepfl.population import train_population  # noqa: E402
from deepfl.runner import Experiment  # noqa: E402


def timed(experiments: list[Experiment], mode: str) -> tuple[float, list[torch.Tensor], int]:
    """Seconds, per-run updates and batched steps of one round's client training in ``mode``."""
    plans = [run.schedule.plan(1) for run in experiments]
    trainer = experiments[0].vectorised
    assert trainer is not None and all(run.vectorised is not None for run in experiments)
    calls = sum(run.vectorised.calls for run in experiments)  # type: ignore[union-attr]
    synchronize(experiments[0].device)
    start = time.perf_counter()
    if mode == "population":
        trained, _ = train_population(trainer, experiments, plans)
        updates = [matrix for matrix, _ in trained]
    else:
        updates = []
        for run, plan in zip(experiments, plans, strict=True):
            keep = run.vectorised
            run.vectorised = keep if mode == "per-seed vectorised" else None
            updates.append(run._train_clients(plan))
            run.vectorised = keep
    synchronize(experiments[0].device)
    total = sum(run.vectorised.calls for run in experiments)  # type: ignore[union-attr]
    return time.perf_counter() - start, updates, total - calls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3, help="K runs (seeds 0..K-1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    args.rounds, args.compare, args.eval_batch_size = 1, True, 500
    torch.set_num_threads(args.threads)
    modes = ["population", "per-seed vectorised", "sequential"]
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as scratch:
        base = paper_round_config(args, scratch).to_dict()
        experiments = [
            Experiment(from_dict({**base, "seed": seed}), Path(scratch) / f"s{seed}")
            for seed in range(args.seeds)
        ]
        steps, updates = {}, {}
        for mode in modes:  # warm-up: allocations, vmap tracing
            _, updates[mode], steps[mode] = timed(experiments, mode)
        for repeat in range(args.repeats):
            for mode in modes[repeat % 3 :] + modes[: repeat % 3]:
                elapsed = timed(experiments, mode)[0]
                seconds[mode].append(elapsed)
                print(f"repeat {repeat + 1}: {mode} {elapsed:.2f} s", flush=True)
    report(args, seconds, updates, steps)


def report(
    args: argparse.Namespace,
    seconds: dict[str, list[float]],
    updates: dict[str, list[torch.Tensor]],
    steps: dict[str, int],
) -> None:
    median = {mode: float(np.median(values)) for mode, values in seconds.items()}
    for mode, against in (
        ("population", "per-seed vectorised"),
        ("population", "sequential"),
        ("per-seed vectorised", "sequential"),
    ):
        reference = torch.cat(updates[against])
        gap = (torch.cat(updates[mode]) - reference).norm(dim=1) / reference.norm(dim=1)
        print(f"largest per-client relative difference, {mode} vs {against}: {gap.max():.1e}")
    print(
        f"\n{args.seeds} seeds x 10 clients, device {args.device}, torch threads "
        f"{torch.get_num_threads()}, repeats {args.repeats}"
    )
    print("median seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in median.items()))
    print(
        f"batched steps: population {steps['population']}, per-seed vectorised "
        f"{steps['per-seed vectorised']} -> bound where a step costs a fixed overhead (GPU): "
        f"{steps['per-seed vectorised'] / steps['population']:.2f}x"
    )
    print(f"population/sequential speed-up: {median['sequential'] / median['population']:.2f}x")
    print(
        f"population/per-seed speed-up: {median['per-seed vectorised'] / median['population']:.2f}x"
    )


if __name__ == "__main__":
    main()
