"""Time FLIP adds to one benign client per round (paper setting: MNIST CNN, ~600-sample client),
and (``--compare``) a FLIP round of 6 benign clients with batched against per-client inversion.

    FLIPLAB_DATA=/work/shared/data python bench/flip_client.py [--threads 2] [--rounds 3]
    FLIPLAB_DATA=/work/shared/data python bench/flip_client.py --compare [--threads 2] [--repeats 2]

``--compare``: clients 0-5 of the Dirichlet(0.5) split of 100 (as the 6 benign clients of a
paper-scale round), ``FlipDefense`` in the chosen mode (default fliplab). A FLIP round is timed
twice in one run, interleaved over ``--repeats``: per-client (each client inverts alone, then
hardens) and batched (``prepare_round``: all clients' inversions in one optimisation per stage,
then each hardens); both on the warm-up round (every client's first selection) and on a later
round (cached warm-up; fliplab's refresh). The hardening (local training) is the same in both.
The last line is the ratio of the two totals (warm-up + later round, median over repeats). Also
printed: the inversion-only ratio, the inversion's work in GFLOP (images drawn by the inversions x
the FLOPs of one stamped image's forward pass and trigger gradient, torch.utils.flop_counter) and
the rate each path reaches, and the gain of the channels-last inversion copy that both paths use.
On CPU the batched path does the same FLOPs in larger batches, so it gains only the per-step
overhead; its target is the GPU, where the per-client path is bound by kernel launches.

Setup: the paper's MNIST CNN (deepfl.models) trained on 12,000 real MNIST images for a few
hundred SGD steps with 20/64 of every batch poisoned by the full DBA trigger to target 2 (a
stand-in for the attacked global model of the continuous setting); one client = a
Dirichlet(0.5) share of 60,000 / 100 = 600 samples (fldata.partition). For each round r the
client runs ``FlipDefense.train`` on a fresh copy of the model (round 1 = warm-up, later rounds
use the cached state) and, separately, plain local training; FLIP's ADDED time is the
difference. Reference (ALGORITHMS.md / issue): the authors' release spends ~70 s per benign
client per round (482 s per round for 6 benign clients) on 2 cores; the target is >= 10x faster.

Also printed: attack accuracy / mask size of the inverted triggers (convergence) and the
fraction of the backdoor target's universal mask inside the true trigger pixels.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # run from anywhere: python bench/flip_client.py

import numpy as np
import torch

from deepfl.client import LocalData, LocalTrainer, RoundContext
from deepfl.config import TrainConfig
from deepfl.flip import FlipDefense
from deepfl.models import build_model
from fldata.datasets import load_dataset, to_float_chw
from fldata.partition import dirichlet_partition
from fldata.triggers import dba_trigger, poison_batch

REFERENCE_SECONDS_PER_CLIENT = 70.0
REFERENCE_SECONDS_PER_ROUND = 482.0
BENIGN_PER_ROUND = 6
TARGET = 2


def backdoored_cnn(
    images: torch.Tensor, labels: torch.Tensor, steps: int, seed: int
) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_model("cnn", (1, 28, 28), 10)
    trigger, generator = dba_trigger((1, 28, 28)), torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        batch = torch.randint(images.shape[0], (64,), generator=generator)
        x, y = poison_batch(images[batch], labels[batch], trigger, TARGET, 20)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--compare", action="store_true", help="batched against per-client FLIP, 6 clients"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="--compare: interleaved repeats (median)"
    )
    parser.add_argument("--mode", default="fliplab", help="--compare: FLIP mode")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds timed (1 warm-up + later ones)"
    )
    parser.add_argument(
        "--client", type=int, default=0, help="client index in the Dirichlet(0.5) split"
    )
    parser.add_argument("--pretrain-steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="FlipConfig override (value parsed as a python literal), repeatable",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    params = {key: _literal(value) for key, value in (p.split("=", 1) for p in args.param)}
    if args.compare:
        compare(args, params)
        return
    model, local = one_client_setup(args)
    trainer = LocalTrainer(TrainConfig())
    defense, state = FlipDefense(**params), dict[str, Any]()
    print(
        f"FlipConfig: warmup_steps={defense.config.warmup_steps} "
        f"pair_steps={defense.config.pair_steps} batch_size={defense.config.batch_size} "
        f"pairs_per_round={defense.config.pairs_per_round} threads={torch.get_num_threads()}"
    )
    added: list[float] = []
    added_cpu: list[float] = []
    for round_index in range(1, args.rounds + 1):
        wall, cpu = time_one_round(model, local, trainer, defense, state, round_index, args)
        added.append(wall)
        added_cpu.append(cpu)
        if round_index == 1:
            print_universal_triggers(state)
    print_added_time(added, added_cpu)


def one_client_setup(args: argparse.Namespace) -> tuple[torch.nn.Module, LocalData]:
    """The backdoored CNN and client ``args.client``'s Dirichlet(0.5) share, on ``args.device``."""
    data = load_dataset("mnist")
    parts = dirichlet_partition(data.y_train, 100, 0.5, seed=args.seed)
    client = parts[args.client]
    images = torch.from_numpy(to_float_chw(data.x_train))
    labels = torch.from_numpy(np.asarray(data.y_train, dtype=np.int64))
    started = time.perf_counter()
    device = torch.device(args.device)
    model = _copy(
        backdoored_cnn(images[:12000], labels[:12000], args.pretrain_steps, args.seed), device
    )
    print(
        f"backdoored CNN trained in {time.perf_counter() - started:.1f} s; client {args.client}: "
        f"{len(client)} samples, class counts "
        f"{np.bincount(data.y_train[client], minlength=10).tolist()}"
    )
    return model, LocalData(images[client].to(device), labels[client].to(device))


def time_one_round(
    model: torch.nn.Module,
    local: LocalData,
    trainer: LocalTrainer,
    defense: FlipDefense,
    state: dict,
    round_index: int,
    args: argparse.Namespace,
) -> tuple[float, float]:
    """FLIP's added wall and process-CPU seconds in one round: ``FlipDefense.train`` minus plain
    local training, each on a fresh copy of ``model``; prints the round's line."""
    device = torch.device(args.device)
    ctx = RoundContext(
        round_index, args.client, 10, device, torch.Generator().manual_seed(round_index)
    )
    plain_model, flip_model = _copy(model), _copy(model)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train(plain_model, local, generator=torch.Generator().manual_seed(round_index))
    _synchronize(device)
    plain, plain_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    defense.train(flip_model, local, state, trainer, ctx)
    _synchronize(device)
    flip, flip_cpu = time.perf_counter() - t0, time.process_time() - c0
    stats = state["flip_last_stats"]
    print(
        f"round {round_index} ({'warm-up' if round_index == 1 else 'cached'}): FLIP {flip:.2f} "
        f"s (inversion {stats['inversion_seconds']:.2f} s), plain {plain:.2f} s, added "
        f"{flip - plain:.2f} s [process CPU time added: {flip_cpu - plain_cpu:.2f} s]; pairs "
        f"{state['flip_last_pairs'].tolist()}, pair triggers attack acc "
        f"{stats.get('mean_attack_acc', float('nan')):.3f}, |m|_1 "
        f"{stats.get('mean_mask_l1', float('nan')):.1f}"
    )
    return flip - plain, flip_cpu - plain_cpu


def print_universal_triggers(state: dict) -> None:
    """The warm-up's universal triggers: attack accuracy, mask L1, and the share of the backdoor
    target's mask inside the true trigger's pixels."""
    truth = dba_trigger((1, 28, 28)).mask > 0
    masks = state["flip_universal_masks"]
    l1 = np.nansum(masks, axis=(1, 2))
    inside = float((masks[TARGET] * truth).sum() / masks[TARGET].sum())
    print(
        "  universal triggers: attack acc "
        f"{np.round(state['flip_universal_attack_acc'], 3).tolist()}, |m|_1 "
        f"{np.round(l1, 1).tolist()}; backdoor target {TARGET}: mask mass inside true "
        f"trigger {inside:.2f} (area {truth.mean():.3f}), smallest mask = target "
        f"{int(np.argmin(l1))}"
    )


def print_added_time(added: list[float], added_cpu: list[float]) -> None:
    """Warm-up and later rounds' added time per client and per round of 6 benign clients, against
    the release's reference."""

    def warm_and_later(values: list[float]) -> tuple[float, float]:
        return values[0], float(np.mean(values[1:])) if len(values) > 1 else float("nan")

    cpu_warm, cpu_later = warm_and_later(added_cpu)
    print(
        "process CPU seconds added (all threads; divide by --threads for an idle machine's wall "
        f"time): warm-up {cpu_warm:.2f} s, later {cpu_later:.2f} s"
    )
    warm, later = warm_and_later(added)
    print(
        f"\nFLIP added time per benign client: warm-up round {warm:.2f} s, later rounds "
        f"{later:.2f} s (reference release: {REFERENCE_SECONDS_PER_CLIENT:.0f} s per client-round)"
    )
    print(
        f"per round with {BENIGN_PER_ROUND} benign clients: all warming up "
        f"{BENIGN_PER_ROUND * warm:.1f} s "
        f"({REFERENCE_SECONDS_PER_ROUND / (BENIGN_PER_ROUND * warm):.1f}x faster than "
        f"{REFERENCE_SECONDS_PER_ROUND:.0f} s), all cached {BENIGN_PER_ROUND * later:.1f} s "
        f"({REFERENCE_SECONDS_PER_ROUND / (BENIGN_PER_ROUND * later):.1f}x faster)"
    )


def compare(args: argparse.Namespace, params: dict) -> None:
    """Batched against per-client FLIP on one round of BENIGN_PER_ROUND clients (module
    docstring).
    """
    data = load_dataset("mnist")
    parts = dirichlet_partition(data.y_train, 100, 0.5, seed=args.seed)
    images = torch.from_numpy(to_float_chw(data.x_train))
    labels = torch.from_numpy(np.asarray(data.y_train, dtype=np.int64))
    device = torch.device(args.device)
    cpu_model = backdoored_cnn(images[:12000], labels[:12000], args.pretrain_steps, args.seed)
    model = _copy(cpu_model, device)
    datas = [
        LocalData(images[parts[i]].to(device), labels[parts[i]].to(device))
        for i in range(BENIGN_PER_ROUND)
    ]
    trainer = LocalTrainer(TrainConfig())
    print(
        f"{BENIGN_PER_ROUND} clients of {[len(d) for d in datas]} samples, mode {args.mode}, "
        f"device {_device_label(device)}, threads {torch.get_num_threads()}, params {params}"
    )
    totals: dict[str, list[float]] = {"per-client": [], "batched": []}
    inversion: dict[str, list[float]] = {"per-client": [], "batched": []}
    _count_drawn_images()
    for repeat in range(args.repeats):
        for name in ("per-client", "batched") if repeat % 2 == 0 else ("batched", "per-client"):
            seconds = _flip_rounds(
                model, datas, trainer, {"mode": args.mode, **params}, name == "batched"
            )
            totals[name].append(sum(s for s, _ in seconds))
            inversion[name].append(sum(i for _, i in seconds))
            print(
                f"repeat {repeat} {name:10s}: warm-up round {seconds[0][0]:.2f} s (inversion "
                f"{seconds[0][1]:.2f} s), later round {seconds[1][0]:.2f} s (inversion "
                f"{seconds[1][1]:.2f} s)",
                flush=True,
            )
    drawn = _DRAWN["images"]
    layout = _layout_speedup(model, datas[0], args.repeats, {"mode": args.mode, **params})
    _DRAWN["images"] = drawn
    print(
        "channels-last frozen inversion copy (both paths above use it) / plain model: "
        f"{layout:.2f}x (one client's warm-up inversion)"
    )
    median = {name: float(np.median(values)) for name, values in totals.items()}
    median_inv = {name: float(np.median(values)) for name, values in inversion.items()}
    gflop = _DRAWN["images"] / (2 * args.repeats) * _flops_per_image(cpu_model) / 1e9
    print(
        f"inversion only: per-client {median_inv['per-client']:.2f} s, batched "
        f"{median_inv['batched']:.2f} s, speed-up "
        f"{median_inv['per-client'] / median_inv['batched']:.2f}x"
    )
    print(
        f"inversion work per FLIP round pair: {gflop:.0f} GFLOP (stamped-image forward + trigger "
        "gradient, torch.utils.flop_counter), the same in both paths: "
        f"{gflop / median_inv['per-client']:.1f} GFLOP/s per-client, "
        f"{gflop / median_inv['batched']:.1f} GFLOP/s batched"
    )
    print(
        "FLIP round (warm-up + later round, inversion + hardening): per-client "
        f"{median['per-client']:.2f} s, batched {median['batched']:.2f} s"
    )
    print(f"batched/per-client speed-up: {median['per-client'] / median['batched']:.2f}x")


def _flip_rounds(
    model: torch.nn.Module,
    datas: list[LocalData],
    trainer: LocalTrainer,
    params: dict,
    batched: bool,
) -> list[tuple[float, float]]:
    """(wall seconds, inversion seconds) of a warm-up round and a later round of all clients."""
    defense = FlipDefense(**params, batch_clients=batched)
    states: list[dict] = [{} for _ in datas]
    device = next(model.parameters()).device
    out = []
    for round_index in (1, 2):
        contexts = [
            RoundContext(round_index, i, 10, device, torch.Generator().manual_seed(round_index))
            for i in range(len(datas))
        ]
        _synchronize(device)
        started = time.perf_counter()
        defense.prepare_round(model, datas, states, contexts, trainer)
        prepared = time.perf_counter() - started
        inverted = prepared
        for data, state, ctx in zip(datas, states, contexts, strict=True):
            defense.train(_copy(model, device), data, state, trainer, ctx)
            inverted += 0.0 if batched else state["flip_last_stats"]["inversion_seconds"]
        _synchronize(device)
        out.append((time.perf_counter() - started, inverted))
    return out


_DRAWN = {"images": 0}


def _count_drawn_images() -> None:
    """Count the stamped images of every inversion step (ProblemSampler.draw) for the FLOP
    estimate.
    """
    from deepfl.flip.inversion import ProblemSampler

    draw = ProblemSampler.draw

    def counting(self: ProblemSampler) -> torch.Tensor:
        indices = draw(self)
        _DRAWN["images"] += int(indices.numel())
        return indices

    ProblemSampler.draw = counting  # type: ignore[method-assign]


def _flops_per_image(model: torch.nn.Module) -> float:
    """FLOPs of one stamped image's forward pass and trigger gradient (the inversion's unit of
    work).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from deepfl.flip.inversion import inversion_model

    network = inversion_model(model)
    images = torch.rand(16, 1, 28, 28)
    mask = torch.full((16, 28, 28), 0.1, requires_grad=True)
    pattern = torch.full((16, 1, 28, 28), 0.5, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        stamped = (1 - mask[:, None]) * images + mask[:, None] * pattern
        loss = torch.nn.functional.cross_entropy(
            network(stamped), torch.zeros(16, dtype=torch.long)
        )
        torch.autograd.grad(loss, [mask, pattern])
    return counter.get_total_flops() / 16


def _layout_speedup(model: torch.nn.Module, data: LocalData, repeats: int, params: dict) -> float:
    """Time of one warm-up inversion (FLIP config ``params``) on the plain model over the
    channels-last copy's (deepfl.flip.inversion.inversion_model), interleaved, median of
    ``repeats``."""
    from deepfl.flip import inversion
    from deepfl.flip.plan import ClientRound

    config = FlipDefense(**params).config
    device = next(model.parameters()).device
    ctx = RoundContext(1, 0, 10, device, torch.Generator().manual_seed(0))
    requests = ClientRound(config, data, {}, ctx).universal_requests()
    times: dict[bool, list[float]] = {True: [], False: []}
    original = inversion.inversion_model
    try:
        for _ in range(repeats):
            for fast in (True, False):
                inversion.inversion_model = original if fast else (lambda net: net)  # type: ignore[assignment]
                _synchronize(device)
                started = time.perf_counter()
                inversion.invert_many(
                    model,
                    data.images,
                    data.labels,
                    requests,
                    config=config,
                    steps=config.warmup_steps,
                    num_classes=10,
                )
                _synchronize(device)
                times[fast].append(time.perf_counter() - started)
    finally:
        inversion.inversion_model = original
    return float(np.median(times[False]) / np.median(times[True]))


def _copy(model: torch.nn.Module, device: torch.device | None = None) -> torch.nn.Module:
    clone = build_model("cnn", (1, 28, 28), 10)
    clone.load_state_dict(model.state_dict())
    return clone.to(device or next(model.parameters()).device)


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels, so that wall-clock times cover the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_label(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _literal(text: str):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


if __name__ == "__main__":
    main()
