"""The adaptive attacker of paper App. A.3 (Table 5).

The attacker knows FLIP: (1) it runs the same trigger inversion as the benign clients of its run
(warm-up, pair selection, label-specific inversion, :func:`.plan.plan_hardening` with the run's
client-defense config: the attacker has no inversion settings of its own), (2) stamps the
inverted triggers on its local images with their TRUE labels and adds them to its training in
addition to the poisoned samples, (3) submits. Every mini-batch is first poisoned by
fldata.triggers.poison_batch (first ``num_poison`` samples stamped with the attack trigger and
relabelled to ``target``), then ``num_augmented`` inverted-trigger samples are appended.

Triggers inverted TOWARD the attack's own target are left out: stamping them with true labels
would unlearn the attacker's backdoor (App. A.3: the attacker hardens the other labels only).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from deepfl.client import LocalData, LocalTrainer, RoundContext
from fldata.params import POSITIVE_FLOAT, POSITIVE_INT, Constraints, Options, Table, validate_value
from fldata.triggers import Trigger, poison_batch

from .config import FlipConfig
from .defense import FlipDefense, cap_plan
from .hardening import StampDirection, append_augment, stamped_pool
from .plan import draw_seed, plan_hardening

__all__ = ["AdaptiveAttacker"]


class AdaptiveAttacker:
    """``AdaptiveAttacker(client_defense=...).train(model, data, state, trainer, ctx, trigger,
    target, num_poison)``.

    Args:
        client_defense: the run's client defense (a :class:`FlipDefense`), handed over by the
            engine; its ``config`` is the attacker's inversion config.
        train_options: extra keyword arguments for ``trainer.train`` (e.g. the attacker's
            ``lr`` / ``epochs``, as the engine's standard attacker uses).
    """

    # only the trainer options (deepfl.client.LocalTrainer.train's keywords): the inversion settings
    # are the run's defense.client_params, and the run must have FLIP clients
    parameter_constraints: ClassVar[Constraints] = {
        "train_options": [
            Table(
                {
                    "epochs": POSITIVE_INT,
                    "lr": POSITIVE_FLOAT,
                    "optimizer": [Options("sgd", "adam")],
                    "max_steps": (*POSITIVE_INT, None),
                }
            ),
            None,
        ],
    }
    client_defense_required = "flip"

    def __init__(
        self, client_defense: Any = None, train_options: dict[str, Any] | None = None
    ) -> None:
        if not isinstance(client_defense, FlipDefense):
            raise TypeError(
                "attack.behaviour='adaptive' runs the inversion of the run's FLIP clients (App. "
                "A.3): set defense.client='flip' (the attacker reads its config from "
                "defense.client_params)"
            )
        options = validate_value(
            "train_options", train_options, self.parameter_constraints["train_options"]
        )
        self.client_defense = client_defense
        self.train_options = dict(options or {})

    @property
    def config(self) -> FlipConfig:
        """The run's FLIP config (the client defense's own object)."""
        return self.client_defense.config

    def inverted_directions(
        self,
        model: torch.nn.Module,
        data: LocalData,
        state: dict,
        ctx: RoundContext,
        target: int,
        trainer: LocalTrainer | None = None,
    ) -> list[StampDirection]:
        """The benign clients' stamping directions on the attacker's data, capped as theirs, minus
        those inverted toward ``target`` (module docstring)."""
        config = self.config
        # pairs_per_round=None: as many pairs as a benign client's one-epoch hardening has slots
        steps = -(-len(data) // int(trainer.settings.batch_size)) if trainer is not None else 1
        plan, _ = cap_plan(
            plan_hardening(config, model, data, state, ctx, None, steps), config.max_mask_fraction
        )
        return [d for d in plan.directions() if d.target != int(target)]

    def make_augment(
        self,
        model: torch.nn.Module,
        data: LocalData,
        state: dict,
        ctx: RoundContext,
        trigger: Trigger,
        target: int,
        num_poison: int,
        trainer: LocalTrainer | None = None,
    ):
        """Poison then append inverted-trigger samples (true labels, other targets) to every
        batch.
        """
        directions = self.inverted_directions(model, data, state, ctx, target, trainer)
        pool_x, pool_y = stamped_pool(data.images, data.labels, directions)
        generator = torch.Generator().manual_seed(draw_seed(ctx.generator))
        add_inverted = append_augment(pool_x, pool_y, self.config.num_augmented, generator)

        def augment(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return add_inverted(*poison_batch(x, y, trigger, target, num_poison))

        return augment

    def train(
        self,
        model: torch.nn.Module,
        data: LocalData,
        state: dict,
        trainer: LocalTrainer,
        ctx: RoundContext,
        trigger: Trigger,
        target: int,
        num_poison: int,
    ) -> None:
        augment = self.make_augment(model, data, state, ctx, trigger, target, num_poison, trainer)
        trainer.train(model, data, augment=augment, generator=ctx.generator, **self.train_options)
