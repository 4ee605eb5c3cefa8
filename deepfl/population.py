"""Seeds batched together (issue 13.3): the runs of one config that differ only in the seed,
stepped round by round in lockstep, their vectorisable clients trained as ONE batched model.

In round r each run k has its own plan (clients, attackers), its own global state G_k and its own
clients' data and generators. The clients that ``deepfl.vectorised.round_groups`` batches within a
run (standard attackers, plain benign clients) are gathered over all runs by training settings,
and each merged group is one ``VectorisedTrainer.train`` call from the stacked starts (one row per
client, G_k for the clients of run k):

    w_{k,i} = SGD(G_k; D_{k,i}, generator_{k,i}),   Delta_{k,i} = s * (w_{k,i} - G_k)

with s = ``attack.scale`` for attackers, 1 otherwise -- exactly the per-run vectorised update, so a
run of the population sees the same batches as the run alone and differs only in float rounding.
The rest of every round (FLIP clients, adaptive attackers, aggregation, evaluation, checkpoints)
runs per run, as in ``Experiment.run``. A run's ``seconds.train`` counts its own sequential part
plus an equal share of the batched call.

Runs resumed at different rounds first catch up alone to the most advanced one. Where the model
cannot be vectorised, each run trains alone (``Experiment.run``), with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from deepfl.attacks import RoundPlan
from deepfl.config import ExperimentConfig
from deepfl.rundir import hold_run_dir, remove_leftover_temps
from deepfl.runner import Experiment
from deepfl.vectorised import ClientGroup, VectorisedTrainer, round_groups

LOGGER = logging.getLogger(__name__)


def check_same_but_seed(configs: list[ExperimentConfig]) -> None:
    """ValueError unless the configs are equal in everything but ``seed`` and the seeds
    differ."""
    seeds = [cfg.seed for cfg in configs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"a population needs distinct seeds, got {seeds}")
    first = {**configs[0].to_dict(), "seed": None}
    for cfg in configs[1:]:
        other = {**cfg.to_dict(), "seed": None}
        if other != first:
            keys = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
            raise ValueError(
                f"runs of a population may differ only in the seed; seed {cfg.seed} differs from "
                f"seed {configs[0].seed} in {', '.join(keys)}"
            )


def train_population(
    trainer: VectorisedTrainer, experiments: list[Experiment], plans: list[RoundPlan]
) -> tuple[list[tuple[torch.Tensor, set[int]]], float]:
    """The batched clients of every run's round (module docstring); returns per run its update
    matrix with the rows trained, and the wall seconds of the batched training."""
    started = time.perf_counter()
    trained = [
        (run.new_updates(plan), set[int]()) for run, plan in zip(experiments, plans, strict=True)
    ]
    merged: dict[str, list[tuple[int, ClientGroup]]] = {}
    for index, (run, plan) in enumerate(zip(experiments, plans, strict=True)):
        for group in round_groups(run, plan):
            merged.setdefault(repr((group.settings, group.scale)), []).append((index, group))
    for members in merged.values():
        owners = [(index, row) for index, group in members for row in group.rows]
        tasks = [task for _, group in members for task in group.tasks]
        starts = torch.stack([experiments[index].global_state for index, _ in owners])
        final = trainer.train(starts, tasks, members[0][1].settings)
        scale = members[0][1].scale
        for (index, row), state, start in zip(owners, final, starts, strict=True):
            updates, done = trained[index]
            torch.sub(state, start, out=updates[row])
            if scale != 1.0:
                updates[row] *= scale
            done.add(row)
    return trained, time.perf_counter() - started


class SeedPopulation:
    """Runs of one config and several seeds, each bound to its own run directory, trained
    together."""

    def __init__(self, experiments: list[Experiment]) -> None:
        if not experiments:
            raise ValueError("a population needs at least one run")
        check_same_but_seed([run.cfg for run in experiments])
        self.experiments = experiments
        self.trainer = experiments[0].vectorised

    def run(self, stop_after: int | None = None) -> list[dict[str, Any] | None]:
        """Run (or continue) every run to ``run.rounds`` (or ``stop_after``); their summaries."""
        if self.trainer is None or any(run.vectorised is None for run in self.experiments):
            LOGGER.warning("population: the model is not vectorised; the seeds run one by one")
            return [run.run(stop_after) for run in self.experiments]
        with contextlib.ExitStack() as stack:
            for run in self.experiments:
                stack.enter_context(hold_run_dir(run.run_dir))
                remove_leftover_temps(run.run_dir)
            return self._run_locked(stop_after)

    def _run_locked(self, stop_after: int | None) -> list[dict[str, Any] | None]:
        done = [run.open_run() for run in self.experiments]
        last = self.experiments[0].last_round(stop_after)
        evaluations: list[Any] = [None] * len(self.experiments)
        for index, run in enumerate(self.experiments):  # catch up alone to the furthest run
            for round_index in range(done[index] + 1, min(max(done), last) + 1):
                evaluations[index] = _keep(
                    run.close_round(run.run_round(round_index), last), evaluations[index]
                )
        bar = tqdm(
            range(max(done) + 1, last + 1),
            initial=max(done),
            total=self.experiments[0].cfg.run.rounds,
            desc=f"rounds of {len(self.experiments)} seeds",
            disable=not self.experiments[0].cfg.run.progress,
            dynamic_ncols=True,
        )
        for round_index in bar:
            plans = [run.schedule.plan(round_index) for run in self.experiments]
            assert self.trainer is not None
            trained, seconds = train_population(self.trainer, self.experiments, plans)
            share = seconds / len(self.experiments)
            for index, run in enumerate(self.experiments):
                row = run.run_round(round_index, trained[index], share)
                evaluations[index] = _keep(run.close_round(row, last), evaluations[index])
        bar.close()
        return [
            run.close_run(last, evaluation)
            for run, evaluation in zip(self.experiments, evaluations, strict=True)
        ]


def _keep(new: Any, old: Any) -> Any:
    return new if new is not None else old


def population_dirs(template: str, seeds: list[int]) -> list[Path]:
    """The run directories of ``seeds``: ``template`` with ``{seed}`` replaced (ValueError without
    it when there are several seeds)."""
    if len(seeds) > 1 and "{seed}" not in template:
        raise ValueError(
            f"--out {template!r} must contain {{seed}} when several seeds run together"
        )
    return [Path(template.replace("{seed}", str(seed))) for seed in seeds]
