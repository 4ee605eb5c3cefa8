"""One probe round of a deepfl run, for the theory check on the network's last layer (issue 15).

From the global model ``G_R`` of a run, the probe runs round ``R+1`` of the run's own schedule (same
clients, same attackers, same per-client random streams) twice: with FLIP on the benign clients and
with no client defense. The attackers poison as in the run; their updates are computed once and used
in both branches (an oblivious attacker, THEORY.md section 2). Three versions of the round:

* (a) ``sgd``: last layer only (features frozen at ``G_R``), the engine's local SGD, in float64;
* (a) ``protocol``: last layer only, the linear engine's probe protocol on ``\\tilde\\phi(x)``: each
  benign client takes ONE full-batch gradient step of the benign learning rate on the mean
  cross-entropy of its clean samples, plus (FLIP) that of its hardening samples (paper convention
  ``\\lambda_c = \\lambda_a = 1``); attackers as in ``sgd``; in float64;
* (b) ``full``: all layers train: the engine's round exactly (float32), evaluated in float64.

FLIP's trigger inversion runs ONCE per benign client on ``G_R`` (float32, as in the engine's
per-client path: :func:`deepfl.flip.plan.plan_hardening`, then the mask cap
:func:`deepfl.flip.defense.cap_plan`). Every version hardens with those stamping directions,
continuing the client's random stream from the state it has after the inversion, so the FLIP branch
of (b) is exactly the engine's ``FlipDefense`` round (tested).

``G_R`` comes from the run directory's kept checkpoint ``checkpoint-rNNNN.pt``
(``run.keep_checkpoints``), or its ``checkpoint.pt`` if that is at round R, or else a deterministic
replay of the run's config and seed to round R (resume and replay are bit-identical). Checkpoints
are read by :func:`deepfl.checkpoint.load` (weights-only; headerless files of older versions
accepted). Only the linear aggregator ``fedavg`` is supported (the closed form needs ``G_{R+1} = G_R
+ \\sum_i p_i \\Delta_i``), and for part (a) only models without BatchNorm (frozen weights do not
freeze batch-normalised features).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from deepfl import checkpoint
from deepfl.attacks import full_trigger
from deepfl.checkpoint import CHECKPOINT_NAME, kept_name
from deepfl.client import LocalData, RoundContext
from deepfl.config import ExperimentConfig
from deepfl.defenses.base import AggregationContext
from deepfl.flip.config import FlipConfig
from deepfl.flip.defense import batch_steps, cap_plan, make_hardening_augment, trainer_options
from deepfl.flip.hardening import StampDirection
from deepfl.flip.plan import HardeningPlan, plan_hardening
from deepfl.lastlayer import has_batch_norm
from deepfl.runner import CONFIG_NAME, Experiment, load_run_config, resolve_device
from deepfl.seeding import CLIENT_TRAINING, torch_generator
from deepfl.server import aggregate, server_learning_rate

CHUNK = 500  # images per forward pass in the full-batch steps and feature extraction


@dataclass(frozen=True)
class RoundStart:
    """The state of a run after round ``round_index``: global model and persistent client states."""

    cfg: ExperimentConfig
    round_index: int
    global_state: torch.Tensor
    client_states: dict
    attacker_states: dict
    source: str


def _round_start(cfg: ExperimentConfig, state: dict[str, Any], source: str) -> RoundStart:
    return RoundStart(
        cfg,
        int(state["round"]),
        state["global_state"],
        state["client_states"],
        state["attacker_states"],
        source,
    )


def _load(path: Path, device: torch.device) -> dict[str, Any]:
    return checkpoint.load(path, device, require_hash=False)


def load_round_start(
    run_dir: str | Path,
    round_index: int,
    replay_dir: str | Path | None = None,
    device: torch.device | None = None,
) -> RoundStart:
    """``G_R`` and the client states of ``run_dir`` after round ``round_index`` (module
    docstring).
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if not cfg.run.pretrain_rounds <= round_index <= cfg.run.rounds:
        raise ValueError(
            f"--round must lie in [run.pretrain_rounds={cfg.run.pretrain_rounds}, "
            f"run.rounds={cfg.run.rounds}] (the probe is the attack-phase round R+1), got "
            f"{round_index}"
        )
    device = device or resolve_device(cfg.device)
    for name in (kept_name(round_index), CHECKPOINT_NAME):
        path = run_dir / name
        if path.exists():
            state = _load(path, device)
            if int(state["round"]) == round_index:
                return _round_start(cfg, state, f"checkpoint {path}")
    return _replay(cfg, round_index, replay_dir, device)


def _replay(
    cfg: ExperimentConfig, round_index: int, replay_dir: str | Path | None, device: torch.device
) -> RoundStart:
    """Re-create round ``round_index`` from the run's config and seed (progress bars off) in
    ``replay_dir`` (empty, or a replay of the same run not past that round; it is resumed) or a
    temporary folder: ``Experiment.run(stop_after=R)`` leaves its checkpoint at round R."""
    replay_cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, progress=False))
    with _folder(replay_dir) as folder:
        if (folder / kept_name(round_index)).exists():
            return _round_start(
                cfg, _load(folder / kept_name(round_index), device), f"replay in {folder}"
            )
        if (folder / CONFIG_NAME).exists() and load_run_config(
            folder
        ).to_dict() != replay_cfg.to_dict():
            raise ValueError(
                f"replay folder {folder} holds another run's replay; use an empty folder"
            )
        latest = folder / CHECKPOINT_NAME
        if latest.exists() and int(_load(latest, device)["round"]) > round_index:
            raise ValueError(
                f"replay folder {folder} is already past round {round_index}; use an empty folder"
            )
        Experiment(replay_cfg, folder, device).run(stop_after=round_index)
        state = _load(latest, device)
        return _round_start(cfg, state, f"replay in {folder}")


@contextlib.contextmanager
def _folder(path: str | Path | None) -> Iterator[Path]:
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="fliplab-replay-") as folder:
        yield Path(folder)


@dataclass(frozen=True)
class FlipPlan:
    """A benign client's FLIP hardening plan at ``G_R`` (mask cap applied), its stamping directions
    and its random stream right after the inversion."""

    hardening: HardeningPlan
    generator_state: torch.Tensor

    @property
    def directions(self) -> list[StampDirection]:
        return self.hardening.directions()


class ProbeRound:
    """Round ``R+1`` of a run from ``G_R``: its plan, the engine's trainers, and the client
    steps.
    """

    def __init__(
        self,
        start: RoundStart,
        flip_params: dict[str, Any] | None,
        device: torch.device,
        run_dir: Path,
    ) -> None:
        cfg = start.cfg
        if cfg.defense.server != "fedavg":
            raise ValueError(
                "the deep probe needs the linear aggregator fedavg (G += sum_i p_i Delta_i); the "
                f"run uses {cfg.defense.server!r}"
            )
        self.start, self.cfg = start, cfg
        self.exp = Experiment(cfg, run_dir, device)  # a toolbox: nothing is written to run_dir
        if has_batch_norm(self.exp.model):
            raise ValueError(
                f"model {cfg.model.name!r} uses BatchNorm: freezing its weights does not freeze "
                "its features, so the last-layer probe (part a) does not apply"
            )
        self.round = start.round_index + 1
        self.plan = self.exp.schedule.plan(self.round)
        self.benign = [c for c in self.plan.clients if c not in self.plan.attackers]
        params = cfg.defense.client_params if cfg.defense.client == "flip" else (flip_params or {})
        self.flip = FlipConfig.from_params(
            params, cfg.data.dataset
        )  # {"mode": ..., **fields}, as the engine
        self.flip_params = dict(params)
        self.server_lr = server_learning_rate(cfg, "attack")
        self.true_trigger = full_trigger(cfg, self.exp.federation.image_shape)

    def context(self, client: int) -> RoundContext:
        """The client's context with a fresh generator from ``(seed, round, client)``, as in the
        engine.
        """
        fed = self.exp.federation
        return RoundContext(
            self.round,
            client,
            fed.num_classes,
            self.exp.device,
            torch_generator(self.cfg.seed, self.round, client, CLIENT_TRAINING),
        )

    def data(self, client: int, dtype: torch.dtype = torch.float32) -> LocalData:
        local = self.exp.federation.clients[client]
        return (
            local
            if dtype == local.images.dtype
            else LocalData(local.images.to(dtype), local.labels)
        )

    def flip_plans(self, progress: bool = False) -> dict[int, FlipPlan]:
        """Each benign client's FLIP inversion on ``G_R`` (float32, a copy of its persistent
        state).
        """
        exp, plans = self.exp, {}
        for client in tqdm(self.benign, desc="FLIP inversions", disable=not progress):
            exp.flat.set(self.start.global_state)
            ctx = self.context(client)
            state = copy.deepcopy(self.start.client_states.get(client, {}))
            data = self.data(client)
            plan = plan_hardening(
                self.flip,
                exp.model,
                data,
                state,
                ctx,
                exp.test_trigger,
                batch_steps(self.flip, exp.benign_trainer, len(data)),
            )
            plans[client] = FlipPlan(
                cap_plan(plan, self.flip.max_mask_fraction)[0], ctx.generator.get_state()
            )
        return plans

    def train_benign(
        self, model: nn.Module, data: LocalData, client: int, plan: FlipPlan | None
    ) -> None:
        """The engine's benign step: plain SGD (``plan`` None) or FlipDefense's hardening (same code
        path as :meth:`deepfl.flip.FlipDefense.train` after the inversion)."""
        ctx = self.context(client)
        trainer = self.exp.benign_trainer
        if plan is None:
            trainer.train(model, data, generator=ctx.generator)
            return
        ctx.generator.set_state(plan.generator_state)
        if self.flip.hardening and plan.directions:
            augment = make_hardening_augment(self.flip, data, plan.hardening, ctx)
        else:
            augment = None
        trainer.train(
            model, data, augment=augment, generator=ctx.generator, **trainer_options(self.flip)
        )

    def train_attacker(self, model: nn.Module, data: LocalData, client: int) -> None:
        """The run's attacker behaviour with its trigger piece (a copy of its persistent state)."""
        exp, attack = self.exp, self.cfg.attack
        trigger = exp.triggers[self.plan.attackers[client]]
        state = copy.deepcopy(self.start.attacker_states.get(client, {}))
        exp.attacker.train(
            model,
            data,
            state,
            exp.attack_trainer,
            self.context(client),
            trigger,
            attack.target,
            attack.num_poison,
        )

    def aggregated(
        self, updates: dict[int, torch.Tensor], global_params: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``server_lr * fedavg(updates)`` in plan order (the engine's aggregation)."""
        clients = self.plan.clients
        stacked = torch.stack([updates[c].reshape(-1) for c in clients])
        context = AggregationContext(
            client_ids=list(clients),
            sample_counts=self.exp.sample_counts[clients],
            global_params=global_params,
            output_layer=self.exp.output_layer if global_params is not None else None,
        )
        result, _ = aggregate(self.exp.aggregator, stacked, context, clients)
        return self.server_lr * result.to(stacked.dtype)

    def weights(self) -> np.ndarray:
        """Aggregation weights ``p_i`` in plan order: ``server_lr * fedavg(e_i)`` (fedavg is
        linear).
        """
        n = len(self.plan.clients)
        return self.aggregated(
            {c: torch.eye(n, dtype=torch.float64)[i] for i, c in enumerate(self.plan.clients)}
        ).numpy()

    def scaled(self, client: int, update: torch.Tensor) -> torch.Tensor:
        """An attacker's update times ``attack.scale`` (as the engine does)."""
        return update * self.cfg.attack.scale if client in self.plan.attackers else update
