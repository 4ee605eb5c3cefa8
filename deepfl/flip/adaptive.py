"""The adaptive attacker of paper App. A.3 (Table 5).

The attacker knows FLIP: (1) it runs the same trigger inversion as the benign clients (warm-up,
pair selection, label-specific inversion: :func:`.defense.hardening_directions`), (2) stamps the
inverted triggers on its local images with their TRUE labels and adds them to its training in
addition to the poisoned samples, (3) submits. Every mini-batch is first poisoned by
fldata.triggers.poison_batch (first ``num_poison`` samples stamped with the attack trigger and
relabelled to ``target``), then ``num_augmented`` inverted-trigger samples are appended.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch

from fldata.params import POSITIVE_FLOAT, POSITIVE_INT, Constraints, Options, Table, validate_value
from fldata.triggers import Trigger, poison_batch

from .config import FlipConfig
from .defense import _draw_seed, _small_triggers_only, hardening_directions
from .hardening import append_augment, stamped_pool

__all__ = ["AdaptiveAttacker"]


class AdaptiveAttacker:
    """``AdaptiveAttacker(**params).train(model, data, state, trainer, ctx, trigger, target, num_poison)``.

    Args:
        train_options: extra keyword arguments for ``trainer.train`` (e.g. the attacker's
            ``lr`` / ``epochs``, as the engine's standard attacker uses).
        **params: :class:`FlipConfig` fields for the inversion (unknown keys raise ValueError).
    """

    # FlipConfig's fields, plus the trainer options (deepfl.client.LocalTrainer.train's keywords)
    parameter_constraints: ClassVar[Constraints] = {
        **FlipConfig.parameter_constraints,
        "train_options": [Table({"epochs": POSITIVE_INT, "lr": POSITIVE_FLOAT,
                                 "optimizer": [Options("sgd", "adam")],
                                 "max_steps": (*POSITIVE_INT, None)}), None],
    }
    check_consistency = FlipConfig.check_consistency
    true_trigger_need = FlipConfig.true_trigger_need

    def __init__(self, train_options: dict[str, Any] | None = None, **params: Any) -> None:
        options = validate_value("train_options", train_options,
                                 self.parameter_constraints["train_options"])
        self.config = FlipConfig.from_dict(params)
        self.train_options = dict(options or {})

    def make_augment(self, model: torch.nn.Module, data: Any, state: dict, ctx: Any, trigger: Trigger,
                     target: int, num_poison: int):
        """Poison then append inverted-trigger samples (true labels) to every batch."""
        directions, _ = hardening_directions(self.config, model, data, state, ctx)
        directions = _small_triggers_only(directions, self.config.max_mask_fraction)
        pool_x, pool_y = stamped_pool(data.images, data.labels, directions)
        generator = torch.Generator().manual_seed(_draw_seed(ctx.generator))
        add_inverted = append_augment(pool_x, pool_y, self.config.num_augmented, generator)

        def augment(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return add_inverted(*poison_batch(x, y, trigger, target, num_poison))

        return augment

    def train(self, model: torch.nn.Module, data: Any, state: dict, trainer: Any, ctx: Any, trigger: Trigger,
              target: int, num_poison: int) -> None:
        augment = self.make_augment(model, data, state, ctx, trigger, target, num_poison)
        trainer.train(model, data, augment=augment, generator=ctx.generator, **self.train_options)
