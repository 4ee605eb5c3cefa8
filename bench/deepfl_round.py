"""Benchmark: seconds per federated round of the deep engine (MNIST CNN, paper's continuous
setting).

Workload per round (ALGORITHMS.md "Federated setup"): 100 clients, Dirichlet(0.5), 10 per round =
4 attackers x 10 poison epochs + 6 benign x 1 epoch, fedavg aggregation, evaluation on the full
MNIST test set (10 000 clean + 9 000 backdoored images). Reported: seconds per round split into
client training, aggregation and evaluation, and client-training throughput (samples / second)
against a plain single-model training loop of the same CNN on 6 000 samples (ratio = our overhead).

    FLIPLAB_DATA=/work/shared/data python bench/deepfl_round.py --rounds 3 --threads 2

``--compare``: the client training of one such round (4 attackers x 10 poison epochs + 6 benign x
1 epoch, the same plan and global state every time), vectorised (deepfl.vectorised, one batched
model per group) against sequential (one client after another), repetitions interleaved, medians
reported. Also printed: the round's training FLOPs (torch's FlopCounterMode on one step, times the
samples trained) against a plain matmul's GFLOP/s measured in the same run (how far each path is
from the machine's GEMM rate), the fixed cost of a step (a one-sample step) times the steps
batching saves (the bound when batched kernels run at the per-client kernels' rate, as on a CPU),
the step counts (the bound where a step costs a fixed launch overhead, as on a GPU), and the
sequential trainer's own spread under a 1e-7 perturbation of its start. Last line:
``vectorised/sequential speed-up: X.XXx``. The normal mode (without ``--compare``) runs whatever
``run.vectorise`` says; add ``--set run.vectorise=true`` to time whole vectorised rounds.

    FLIPLAB_DATA=/work/shared/data python bench/deepfl_round.py --compare --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # run as a script from a source checkout

from deepfl.attacks import RoundPlan
from deepfl.config import ExperimentConfig, parse_override, resolve
from deepfl.presets import preset
from deepfl.runner import Experiment
from deepfl.vectorised import VectorisedTrainer


def plain_loop_samples_per_second(images: torch.Tensor, labels: torch.Tensor, epochs: int) -> float:
    """One model, one SGD optimiser, shuffled 64-sample mini-batches: the lower bound on
    overhead.
    """
    torch.manual_seed(0)
    from deepfl.models import build_model

    model = build_model("cnn", (1, 28, 28), 10).to(images.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(labels)).to(images.device)
        for first in range(0, len(labels), 64):
            index = order[first : first + 64]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images[index]), labels[index]).backward()
            optimizer.step()
    if images.device.type == "cuda":
        torch.cuda.synchronize()
    return epochs * len(labels) / (time.perf_counter() - start)


def paper_round_config(args: argparse.Namespace, scratch: str) -> ExperimentConfig:
    """Preset paper, continuous attack from round 1 (no pre-training): every round is an attack
    round.
    """
    return resolve(
        preset("paper"),
        {
            "device": args.device,
            "attack": {"kind": "continuous", "start_round": 1},
            "run": {
                "rounds": args.rounds,
                "pretrain_rounds": 0,
                "progress": False,
                "threads": args.threads,
                "cache_dir": scratch,
                "eval_batch_size": args.eval_batch_size,
                **({"vectorise": True} if args.compare else {}),
            },
        },
        *(parse_override(text) for text in args.set),
    )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_gflops(device: torch.device, size: int = 1024, repeats: int = 20) -> float:
    """GFLOP/s of a plain float32 (size x size) @ (size x size) matmul: the machine's GEMM rate."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def fixed_step_seconds(experiment: Experiment, repeats: int = 30) -> float:
    """Median seconds of one sequential SGD step on ONE sample: an upper bound on the fixed cost of
    a step (Python, dispatch, optimiser, kernel launches), the only cost batching clients removes
    when the batched kernels run at the per-client kernels' FLOP rate."""
    data = experiment.federation.clients[0]
    experiment.flat.set(experiment.global_state)
    optimizer = torch.optim.SGD(
        experiment.model.parameters(), lr=1e-6, momentum=0.9, weight_decay=5e-4
    )
    times = []
    for _ in range(repeats + 3):
        synchronize(experiment.device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(experiment.model(data.images[:1]), data.labels[:1]).backward()
        optimizer.step()
        synchronize(experiment.device)
        times.append(time.perf_counter() - start)
    return float(np.median(times[3:]))


def round_training_flops(experiment: Experiment, plan: RoundPlan) -> float:
    """FLOPs of a round's local training: FlopCounterMode's count for one 64-sample SGD step
    (forward + backward) per sample, times the samples each client trains (size x epochs)."""
    cfg, clients = experiment.cfg, experiment.federation.clients
    images, labels = clients[plan.clients[0]].images[:64], clients[plan.clients[0]].labels[:64]
    experiment.flat.set(experiment.global_state)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(experiment.model(images), labels).backward()
    experiment.model.zero_grad(set_to_none=True)
    samples = sum(
        len(clients[c]) * (cfg.attack.epochs if c in plan.attackers else cfg.benign.epochs)
        for c in plan.clients
    )
    return counter.get_total_flops() / labels.shape[0] * samples


def time_training(
    experiment: Experiment, plan: RoundPlan, trainer: VectorisedTrainer | None
) -> tuple[float, torch.Tensor]:
    """Seconds of ``_train_clients(plan)`` with the given vectorised trainer (None = sequential)."""
    experiment.vectorised = trainer
    synchronize(experiment.device)
    start = time.perf_counter()
    updates = experiment._train_clients(plan)
    synchronize(experiment.device)
    return time.perf_counter() - start, updates


def compare(args: argparse.Namespace) -> None:
    """Vectorised against sequential client training of one paper-scale round, interleaved."""
    with tempfile.TemporaryDirectory() as scratch:
        experiment = Experiment(paper_round_config(args, scratch), scratch)
        plan, trainer = experiment.schedule.plan(1), experiment.vectorised
        if trainer is None:
            raise SystemExit("the model could not be vectorised (see the warning above)")
        modes: dict[str, VectorisedTrainer | None] = {"sequential": None, "vectorised": trainer}
        for mode in modes.values():  # warm-up: first-call allocations, vmap tracing
            time_training(experiment, plan, mode)
        seconds: dict[str, list[float]] = {name: [] for name in modes}
        updates: dict[str, torch.Tensor] = {}
        gemm, calls = [gemm_gflops(experiment.device)], trainer.calls
        for repeat in range(args.repeats):
            for name in list(modes) if repeat % 2 == 0 else list(modes)[::-1]:
                elapsed, updates[name] = time_training(experiment, plan, modes[name])
                seconds[name].append(elapsed)
                print(f"repeat {repeat + 1}: {name} {elapsed:.2f} s", flush=True)
        gemm.append(gemm_gflops(experiment.device))
        updates["perturbed"] = perturbed_sequential(experiment, plan)
        flops = round_training_flops(experiment, plan)
        fixed = fixed_step_seconds(experiment)
        steps = (sequential_steps(experiment, plan), (trainer.calls - calls) // args.repeats)
    report_comparison(
        experiment, plan, seconds, updates, flops, float(np.median(gemm)), steps, fixed
    )


def perturbed_sequential(
    experiment: Experiment, plan: RoundPlan, relative: float = 1e-7
) -> torch.Tensor:
    """Sequential updates from the global state scaled by (1 + relative): how far float32 rounding
    alone moves this round (local SGD is chaotic over the attackers' poison epochs)."""
    start = experiment.global_state
    experiment.global_state = start * (1 + relative)
    try:
        return time_training(experiment, plan, None)[1]
    finally:
        experiment.global_state = start


def sequential_steps(experiment: Experiment, plan: RoundPlan) -> int:
    """SGD steps of the round trained one client after another: sum_i epochs_i * ceil(n_i / B)."""
    cfg, total = experiment.cfg, 0
    for client in plan.clients:
        settings = cfg.attack.train_config() if client in plan.attackers else cfg.benign
        total += settings.epochs * -(
            -len(experiment.federation.clients[client]) // settings.batch_size
        )
    return total


def report_comparison(
    experiment: Experiment,
    plan: RoundPlan,
    seconds: dict[str, list[float]],
    updates: dict[str, torch.Tensor],
    flops: float,
    gemm: float,
    steps: tuple[int, int],
    fixed: float,
) -> None:
    """Print medians, agreement of the updates, FLOP efficiency and (last line) the speed-up."""
    median = {name: float(np.median(values)) for name, values in seconds.items()}
    attackers = torch.tensor([c in plan.attackers for c in plan.clients])
    gaps = {
        name: (updates[name] - updates["sequential"]).norm(dim=1)
        / updates["sequential"].norm(dim=1)
        for name in ("vectorised", "perturbed")
    }
    sizes = [len(experiment.federation.clients[c]) for c in plan.clients]
    print(
        f"\ndevice {experiment.device}, torch threads {torch.get_num_threads()}, repeats "
        f"{len(seconds['sequential'])}, clients {len(plan.clients)} ({len(plan.attackers)} "
        f"attackers), local sizes {min(sizes)}-{max(sizes)}"
    )
    print(
        "median seconds of client training: " + ", ".join(f"{k} {v:.2f}" for k, v in median.items())
    )
    for name, label in (
        ("vectorised", "vectorised vs sequential"),
        ("perturbed", "sequential from a start * (1 + 1e-7)"),
    ):
        print(
            f"largest per-client relative difference of the updates, {label}: benign "
            f"{gaps[name][~attackers].max():.1e}, attackers {gaps[name][attackers].max():.1e}"
        )
    floor = flops / (gemm * 1e9)
    print(
        f"round training FLOPs {flops / 1e9:.0f} GFLOP; plain matmul {gemm:.0f} GFLOP/s -> floor "
        f"{floor:.2f} s at the GEMM rate; achieved: "
        + ", ".join(
            f"{k} {flops / v / 1e9:.0f} GFLOP/s ({100 * floor / v:.0f}% of GEMM)"
            for k, v in median.items()
        )
    )
    print(
        "bound if batching made every kernel run at the GEMM rate: "
        f"{median['sequential'] / floor:.2f}x"
    )
    print(
        f"steps: sequential {steps[0]} client steps, vectorised {steps[1]} batched steps -> bound "
        "on the speed-up where a step's cost is fixed overhead (kernel launches, as on a GPU): "
        f"{steps[0] / steps[1]:.2f}x"
    )
    saved = (steps[0] - steps[1]) * fixed
    print(
        f"fixed cost of a sequential step <= {1000 * fixed:.1f} ms (one-sample step): batching "
        f"removes at most {saved:.2f} s of the sequential {median['sequential']:.2f} s -> bound "
        "here at equal kernel FLOP rates: "
        f"{median['sequential'] / max(median['sequential'] - saved, 1e-9):.2f}x"
    )
    print(f"vectorised/sequential speed-up: {median['sequential'] / median['vectorised']:.2f}x")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-batch-size", type=int, default=500)
    parser.add_argument(
        "--compare", action="store_true", help="vectorised against sequential client training"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="--compare: timed repetitions of each mode"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override on top of the paper round (e.g. attack.epochs=1 for a smoke run)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.compare:
        compare(args)
        return
    with tempfile.TemporaryDirectory() as scratch:
        experiment = Experiment(paper_round_config(args, scratch), scratch)
        images = torch.cat([c.images for c in experiment.federation.clients])[:6000]
        labels = torch.cat([c.labels for c in experiment.federation.clients])[:6000]
        # Machines drift: the plain loop is measured before AND after the rounds.
        plain_before = plain_loop_samples_per_second(images, labels, epochs=1)
        rows = [timed_round(experiment, r) for r in range(1, args.rounds + 1)]
        plain_after = plain_loop_samples_per_second(images, labels, epochs=1)
    print_summary(experiment, rows, plain_before, plain_after)


def timed_round(experiment: Experiment, round_index: int) -> dict:
    """One round of ``experiment`` with its evaluation timed and its training samples counted
    (local data size x epochs, attackers at the attack's epochs); prints the round's line."""
    cfg = experiment.cfg
    row = experiment.run_round(round_index)
    if experiment.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    experiment.evaluate()
    row["seconds"]["evaluate"] = time.perf_counter() - start
    plan = experiment.schedule.plan(round_index)
    row["samples"] = sum(
        len(experiment.federation.clients[c])
        * (cfg.attack.epochs if c in plan.attackers else cfg.benign.epochs)
        for c in plan.clients
    )
    print(
        f"round {round_index}: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in row["seconds"].items())
        + f", {row['samples']} training samples"
    )
    return row


def print_summary(
    experiment: Experiment, rows: list[dict], plain_before: float, plain_after: float
) -> None:
    """Mean seconds per round (the first round pays one-off warm-up costs and is left out when
    there are more) and client training's samples/s against the plain loop's."""
    measured = rows[1:] if len(rows) > 1 else rows
    mean = {k: float(np.mean([r["seconds"][k] for r in measured])) for k in measured[0]["seconds"]}
    ours = float(
        np.sum([r["samples"] for r in measured]) / np.sum([r["seconds"]["train"] for r in measured])
    )
    plain = (plain_before + plain_after) / 2
    print(
        f"\ndevice {experiment.device}, torch threads {torch.get_num_threads()}, rounds averaged: "
        f"{len(measured)}"
    )
    print(
        "mean seconds per round: "
        + ", ".join(f"{k} {v:.2f}" for k, v in mean.items())
        + f", total {sum(mean.values()):.2f} (without evaluation "
        f"{sum(mean.values()) - mean['evaluate']:.2f})"
    )
    print(
        f"client training: {ours:.0f} samples/s; plain loop: {plain:.0f} samples/s (before "
        f"{plain_before:.0f}, after {plain_after:.0f}) (6 000-sample epoch in {6000 / plain:.2f} "
        f"s); ratio plain/ours = {plain / ours:.2f}"
    )
    print("reference (authors' release, this 2-core machine): 38 s per round without defense")


if __name__ == "__main__":
    main()
