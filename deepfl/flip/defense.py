"""FLIP on a benign client (paper section 3, Algorithms 1-2): the engine's ``ClientDefense``.

Per local round, on the received global model:

1. the inversions of :mod:`.plan` (cached warm-up or ``fliplab``'s per-round refresh, then the
   label-specific inversion of the selected pairs), giving a :class:`~.plan.HardeningPlan`; with
   ``batch_clients`` the engine's ``prepare_round`` hook makes the plans of all benign clients of
   the round at once (:mod:`.batched`);
2. the mask cap: inverted triggers larger than ``max_mask_fraction`` of the image are not
   stamped (counted in ``flip_last_stats["num_capped"]``; oracle triggers are never capped);
3. hardening: the engine's trainer runs the local epochs with an ``augment`` that stamps the
   inverted triggers on local samples under their TRUE labels (:mod:`.hardening`): appended
   (paper) or in place (release), every direction in every batch or one slot per few batches
   (``pair_schedule``); ``hardening=False`` (App. A.5) trains without stamped samples and skips the
   inversion, which nothing would use (with FLIP's local training settings:
   ``hardening_optimizer``, ``hardening_lr``...).

The config comes from the run's ``defense.client_params`` (``{"mode": ..., **fields}``,
:meth:`FlipConfig.from_params`) and data set. :meth:`FlipDefense.run_artifacts` gives the
engine ``flip_triggers.npz`` (a few inverted triggers, Figure 2c).
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import numpy as np
import torch

from deepfl.client import LocalData, LocalTrainer, RoundContext
from deepfl.flip_modes import MODES
from fldata.params import Constraints, Options
from fldata.triggers import Trigger

from .batched import plan_round
from .config import FlipConfig
from .hardening import (
    Augment,
    StampDirection,
    append_augment,
    replace_augment,
    rotating_augment,
    stamped_pool,
)
from .inversion import InversionResult
from .plan import HardeningPlan, draw_seed, plan_hardening
from .state import FlipClientState

__all__ = [
    "FlipDefense",
    "hardening_directions",
    "make_hardening_augment",
    "cap_plan",
    "batch_steps",
]

logger = logging.getLogger("deepfl.flip")
TRIGGERS_FILE = "flip_triggers.npz"


class FlipDefense:
    """FLIP's benign-client behaviour: ``FlipDefense(**client_params).train(model, data, state,
    trainer, ctx)``.

    Args:
        true_trigger: the attack's true trigger, ONLY for the oracle ground-truth baseline or the
            ``leak_true_trigger_box`` option, and to warn when the mask cap is smaller than it;
            never used otherwise.
        dataset: the run's data set (per-data-set defaults, :mod:`deepfl.flip_modes`); None =
            MNIST's.
        **params: ``mode`` and :class:`FlipConfig` fields (unknown keys raise ValueError).
    """

    # the params are ``mode`` and FlipConfig's fields (checked before construction by
    # deepfl.components)
    parameter_constraints: ClassVar[Constraints] = {
        "mode": [Options(*MODES)],
        **FlipConfig.parameter_constraints,
    }
    true_trigger_need = FlipConfig.true_trigger_need

    def __init__(
        self, true_trigger: Trigger | None = None, dataset: str | None = None, **params: Any
    ) -> None:
        self.config = FlipConfig.from_params(params, dataset)
        self.true_trigger = true_trigger
        self.last_results: list[InversionResult] = []
        self._prepared: dict[tuple[int, int], tuple[HardeningPlan, float]] = {}
        _warn_if_cap_below(self.config, true_trigger)

    def prepare_round(
        self,
        model: torch.nn.Module,
        datas: list[LocalData],
        states: list[dict],
        contexts: list[RoundContext],
        trainer: LocalTrainer,
    ) -> None:
        """Engine hook, before the benign clients of a round train (all on the global ``model``):
        their inversions in one optimisation per stage (:mod:`.batched`, ``batch_clients``).
        :meth:`train` then hardens each client with its prepared plan."""
        self._prepared = {}
        if not self.config.batch_clients or not datas:
            return
        started = time.perf_counter()
        steps = [batch_steps(self.config, trainer, len(data)) for data in datas]
        plans = plan_round(
            self.config,
            model,
            list(zip(datas, states, contexts, strict=True)),
            self.true_trigger,
            steps,
        )
        share = (time.perf_counter() - started) / len(plans)
        self._prepared = {
            (ctx.round, ctx.client_id): (plan, share)
            for ctx, plan in zip(contexts, plans, strict=True)
        }

    def train(
        self,
        model: torch.nn.Module,
        data: LocalData,
        state: dict,
        trainer: LocalTrainer,
        ctx: RoundContext,
    ) -> None:
        """Invert, select, harden (module docstring); updates ``model`` in place and ``state``.
        A plan made by :meth:`prepare_round` for this (round, client) is used instead of
        inverting."""
        prepared = self._prepared.pop((ctx.round, ctx.client_id), None)
        if prepared is None:
            started = time.perf_counter()
            plan = plan_hardening(
                self.config,
                model,
                data,
                state,
                ctx,
                self.true_trigger,
                batch_steps(self.config, trainer, len(data)),
            )
            prepared = (plan, time.perf_counter() - started)
        self.harden(model, data, state, trainer, ctx, *prepared)

    def harden(
        self,
        model: torch.nn.Module,
        data: LocalData,
        state: dict,
        trainer: LocalTrainer,
        ctx: RoundContext,
        plan: HardeningPlan,
        inversion_seconds: float,
    ) -> None:
        """Steps 2-3 of the module docstring on a finished plan."""
        started = time.perf_counter()
        self.last_results = plan.results
        plan, capped = cap_plan(plan, self.config.max_mask_fraction)
        flip = FlipClientState.from_dict(state)
        stats = dict(flip.last_stats or {})
        stats.update(
            inversion_seconds=inversion_seconds,
            num_capped=float(capped),
            num_stamped_directions=float(len(plan.directions())),
        )
        if capped:
            logger.info(
                "FLIP client %s round %s: %d inverted trigger(s) "
                "above max_mask_fraction=%g not stamped",
                ctx.client_id,
                ctx.round,
                capped,
                self.config.max_mask_fraction,
            )
        # FLIP's local training settings hold with or without stamped samples (A.5 keeps them too)
        augment = (
            make_hardening_augment(self.config, data, plan, ctx)
            if (self.config.hardening and plan.directions())
            else None
        )
        trainer.train(
            model, data, augment=augment, generator=ctx.generator, **trainer_options(self.config)
        )
        stats["round_seconds"] = inversion_seconds + time.perf_counter() - started
        flip.last_stats = stats
        flip.save_to(state)

    def run_artifacts(self, client_states: dict[int, dict]) -> dict[str, dict[str, np.ndarray]]:
        """``{"flip_triggers.npz": arrays}``: a few inverted triggers of the run (Figure 2c), see
        :func:`.figure_triggers.collect_triggers` for the format."""
        from .figure_triggers import collect_triggers

        arrays = collect_triggers(client_states)
        return {TRIGGERS_FILE: arrays} if arrays["target"].size else {}


def batch_steps(config: FlipConfig, trainer: LocalTrainer, num_samples: int) -> int:
    """Mini-batch steps of one client's hardening: epochs x ceil(n / batch), capped by
    ``hardening_max_steps``."""
    settings = trainer.settings
    epochs = settings.epochs if config.hardening_epochs is None else config.hardening_epochs
    steps = epochs * -(-int(num_samples) // int(settings.batch_size))
    return steps if config.hardening_max_steps is None else min(steps, config.hardening_max_steps)


def hardening_directions(
    config: FlipConfig,
    model: torch.nn.Module,
    data: LocalData,
    state: dict,
    ctx: RoundContext,
    true_trigger: Trigger | None = None,
    batch_steps: int = 1,
) -> tuple[list[StampDirection], list[InversionResult]]:
    """The round's stamping directions (uncapped) and pair inversions: :func:`.plan.plan_hardening`
    flattened.
    """
    plan = plan_hardening(config, model, data, state, ctx, true_trigger, batch_steps)
    return plan.directions(), plan.results


def cap_plan(plan: HardeningPlan, max_fraction: float) -> tuple[HardeningPlan, int]:
    """``plan`` without the inverted triggers whose mask covers more than ``max_fraction`` of the
    image (released code: 1/8), and how many were dropped. Oracle plans are returned whole."""
    if plan.oracle or max_fraction >= 1.0:
        return plan, 0
    dropped = 0

    def keep(direction: StampDirection) -> StampDirection | None:
        nonlocal dropped
        triggers = tuple(
            t for t in direction.triggers if t.mask.sum() <= max_fraction * t.mask.size
        )
        dropped += len(direction.triggers) - len(triggers)
        return StampDirection(direction.sources, triggers, direction.target) if triggers else None

    universal = [d for d in map(keep, plan.universal) if d is not None]
    pairs = [
        kept
        for kept in (tuple(d for d in map(keep, pair) if d is not None) for pair in plan.pairs)
        if kept
    ]
    return HardeningPlan(universal, pairs, plan.results, plan.oracle), dropped


def make_hardening_augment(
    config: FlipConfig, data: LocalData, plan: HardeningPlan, ctx: RoundContext
) -> Augment:
    """The ``augment(x, y)`` of the round: append (paper) or replace (release) stamping, every
    direction in every batch (``pair_schedule="all_batches"``) or one slot per
    ``pair_hold_batches`` batches (``"rotate"``: universal slots once, then the pairs in turn)."""
    generator = torch.Generator().manual_seed(draw_seed(ctx.generator))
    num_classes = int(ctx.num_classes)
    batch_rule = config.min_samples_per_label if config.symmetric_rule == "batch" else None

    def slot_augment(directions: tuple[StampDirection, ...], pair: bool) -> Augment:
        if config.augment_mode == "replace":
            return replace_augment(
                directions,
                num_classes,
                config.replace_portion,
                generator,
                batch_rule if pair else None,
            )
        return append_augment(
            *stamped_pool(data.images, data.labels, directions), config.num_augmented, generator
        )

    if config.pair_schedule == "rotate" and not plan.oracle:
        once = [slot_augment((direction,), False) for direction in plan.universal]
        cycle = [slot_augment(pair, True) for pair in plan.pairs]
        return rotating_augment(once, cycle, config.pair_hold_batches)
    if config.augment_mode == "append":
        return slot_augment(tuple(plan.directions()), False)
    slots = [slot_augment((d,), False) for d in plan.universal] + [
        slot_augment(p, True) for p in plan.pairs
    ]
    return _chain(slots)


def _chain(augments: list[Augment]) -> Augment:
    def augment(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for step in augments:
            x, y = step(x, y)
        return x, y

    return augment


def trainer_options(config: FlipConfig) -> dict[str, Any]:
    """``LocalTrainer.train`` keywords of the hardening (optimiser, lr, betas, epochs, max
    steps).
    """
    options: dict[str, Any] = {}
    if config.hardening_optimizer != "sgd":
        options["optimizer"] = config.hardening_optimizer
    for key, value in (
        ("betas", config.hardening_betas),
        ("lr", config.hardening_lr),
        ("weight_decay", config.hardening_weight_decay),
        ("epochs", config.hardening_epochs),
        ("max_steps", config.hardening_max_steps),
    ):
        if value is not None:
            options[key] = value
    return options


def _warn_if_cap_below(config: FlipConfig, true_trigger: Trigger | None) -> None:
    """Say when the mask cap is smaller than the attack's trigger (its inversions may be
    dropped).
    """
    if true_trigger is None or config.is_oracle or config.max_mask_fraction >= 1.0:
        return
    mask = true_trigger.mask
    area = float(mask.sum()) / float(np.prod(tuple(mask.shape)))
    if area > config.max_mask_fraction:
        logger.warning(
            "FLIP max_mask_fraction=%g is below the attack trigger's area (%.3f of the image): "
            "inverted triggers of its size are not stamped (counted in "
            "flip_last_stats['num_capped'])",
            config.max_mask_fraction,
            area,
        )
