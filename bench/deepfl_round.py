"""Benchmark: seconds per federated round of the deep engine (MNIST CNN, paper's continuous setting).

Workload per round (ALGORITHMS.md "Federated setup"): 100 clients, Dirichlet(0.5), 10 per round =
4 attackers x 10 poison epochs + 6 benign x 1 epoch, fedavg aggregation, evaluation on the full
MNIST test set (10 000 clean + 9 000 backdoored images). Reported: seconds per round split into
client training, aggregation and evaluation, and client-training throughput (samples / second)
against a plain single-model training loop of the same CNN on 6 000 samples (ratio = our overhead).

    FLIPLAB_DATA=/work/shared/data python bench/deepfl_round.py --rounds 3 --threads 2
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a source checkout

from deepfl.config import resolve
from deepfl.presets import preset
from deepfl.runner import Experiment


def plain_loop_samples_per_second(images: torch.Tensor, labels: torch.Tensor, epochs: int) -> float:
    """One model, one SGD optimiser, shuffled 64-sample mini-batches: the lower bound on overhead."""
    torch.manual_seed(0)
    from deepfl.models import build_model

    model = build_model("cnn", (1, 28, 28), 10).to(images.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(labels)).to(images.device)
        for first in range(0, len(labels), 64):
            index = order[first:first + 64]
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images[index]), labels[index]).backward()
            optimizer.step()
    if images.device.type == "cuda":
        torch.cuda.synchronize()
    return epochs * len(labels) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--eval-batch-size", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        cfg = resolve(preset("paper"), {
            "device": args.device,
            "attack": {"kind": "continuous", "start_round": 1},
            "run": {"rounds": args.rounds, "pretrain_rounds": 0, "progress": False, "threads": args.threads,
                    "cache_dir": scratch, "eval_batch_size": args.eval_batch_size},
        })
        experiment = Experiment(cfg, scratch)
        federation = experiment.federation
        images = torch.cat([c.images for c in federation.clients])[:6000]
        labels = torch.cat([c.labels for c in federation.clients])[:6000]
        plain_before = plain_loop_samples_per_second(images, labels, epochs=1)  # machines drift: measure
        rows = []
        for round_index in range(1, args.rounds + 1):
            row = experiment.run_round(round_index)
            if experiment.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            experiment.evaluate()
            row["seconds"]["evaluate"] = time.perf_counter() - start
            plan = experiment.schedule.plan(round_index)
            row["samples"] = sum(
                len(experiment.federation.clients[c]) * (cfg.attack.epochs if c in plan.attackers else cfg.benign.epochs)
                for c in plan.clients)
            rows.append(row)
            print(f"round {round_index}: " + ", ".join(f"{k} {v:.2f} s" for k, v in row["seconds"].items())
                  + f", {row['samples']} training samples")

        measured = rows[1:] if len(rows) > 1 else rows  # the first round pays one-off warm-up costs
        mean = {k: float(np.mean([r["seconds"][k] for r in measured])) for k in measured[0]["seconds"]}
        ours = float(np.sum([r["samples"] for r in measured]) / np.sum([r["seconds"]["train"] for r in measured]))
        plain_after = plain_loop_samples_per_second(images, labels, epochs=1)  # before AND after the rounds
        plain = (plain_before + plain_after) / 2

    print(f"\ndevice {experiment.device}, torch threads {torch.get_num_threads()}, rounds averaged: {len(measured)}")
    print("mean seconds per round: " + ", ".join(f"{k} {v:.2f}" for k, v in mean.items())
          + f", total {sum(mean.values()):.2f} (without evaluation {sum(mean.values()) - mean['evaluate']:.2f})")
    print(f"client training: {ours:.0f} samples/s; plain loop: {plain:.0f} samples/s "
          f"(before {plain_before:.0f}, after {plain_after:.0f}) "
          f"(6 000-sample epoch in {6000 / plain:.2f} s); ratio plain/ours = {plain / ours:.2f}")
    print("reference (authors' release, this 2-core machine): 38 s per round without defense")


if __name__ == "__main__":
    main()
