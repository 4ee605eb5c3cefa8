"""Client side of the engine: local data, local SGD, benign and attacker behaviours (CONTRACT.md).

Local training (one client, one round) runs ``epochs`` passes over a fresh random permutation of
the client's samples in mini-batches of ``batch_size``, each step
    w <- SGD(momentum, weight decay)(w, grad CE(f_w(x'), y'))   with (x', y') = augment(x, y),
where ``augment`` is the identity for benign clients, DBA poisoning for attackers
(fldata.triggers.poison_batch: the first ``num_poison`` samples stamped and relabelled to the
target) and FLIP's hardening for FLIP clients. The optimiser is created afresh each round
(clients keep no optimiser state between rounds, as in the released code).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from deepfl.config import TrainConfig
from deepfl.registry import Registry
from fldata.params import Constraints
from fldata.triggers import Trigger, poison_batch

# A batch transform ``(images, labels) -> (images, labels)``: poisoning (attackers) or FLIP's
# hardening.
Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class LocalData:
    """A client's samples: images (N, C, H, W) float in [0, 1] and labels (N,) int64, on the
    device.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class RoundContext:
    """What a client knows about the current round; ``generator`` is derived from (seed, round,
    client).
    """

    round: int
    client_id: int
    num_classes: int
    device: torch.device
    generator: torch.Generator


class LocalTrainer:
    """Local SGD with the settings of one client type (benign or attacker)."""

    def __init__(self, settings: TrainConfig) -> None:
        self.settings = settings

    def train(
        self,
        model: nn.Module,
        data: LocalData,
        *,
        augment: Augment | None = None,
        epochs: int | None = None,
        lr: float | None = None,
        optimizer: str = "sgd",
        max_steps: int | None = None,
        generator: torch.Generator | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float | None = None,
    ) -> dict[str, float]:
        """Train ``model`` in place; return {"steps", "samples", "loss" (mean training loss)}.

        ``optimizer`` is "sgd" (momentum / weight decay from the settings) or "adam" (same lr and
        weight decay, ``betas``); ``lr`` / ``epochs`` / ``weight_decay`` override the settings.
        ``generator`` drives the per-epoch permutations (seeded by the engine).
        """
        settings = self.settings
        learning_rate = settings.lr if lr is None else lr
        decay = settings.weight_decay if weight_decay is None else weight_decay
        if optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                model.parameters(), lr=learning_rate, momentum=settings.momentum, weight_decay=decay
            )
        elif optimizer == "adam":
            opt = torch.optim.Adam(
                model.parameters(), lr=learning_rate, betas=betas, weight_decay=decay
            )
        else:
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        model.train()
        num_samples = len(data)
        device = data.images.device
        total_loss = torch.zeros((), device=device)
        steps = samples = 0
        for _ in range(settings.epochs if epochs is None else epochs):
            order = torch.randperm(num_samples, generator=generator, device="cpu").to(device)
            for start in range(0, num_samples, settings.batch_size):
                if max_steps is not None and steps >= max_steps:
                    break
                index = order[start : start + settings.batch_size]
                images, labels = data.images[index], data.labels[index]
                if augment is not None:
                    images, labels = augment(images, labels)
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(images), labels)
                loss.backward()
                opt.step()
                total_loss += loss.detach() * labels.shape[0]
                steps += 1
                samples += int(labels.shape[0])
        return {"steps": steps, "samples": samples, "loss": float(total_loss) / max(samples, 1)}


class ClientDefense(Protocol):
    """Benign behaviour of a client (CONTRACT.md); ``state`` persists across rounds and is
    checkpointed. ``parameter_constraints`` declares the constructor's params (fldata.params),
    so a config's ``defense.client_params`` is checked before any data is read
    (deepfl.components).
    """

    parameter_constraints: ClassVar[Constraints]

    def train(
        self,
        model: nn.Module,
        data: LocalData,
        state: dict,
        trainer: LocalTrainer,
        ctx: RoundContext,
    ) -> None: ...


class NoClientDefense:
    """Plain local training: ``trainer.train(model, data)``."""

    parameter_constraints: ClassVar[Constraints] = {}  # takes no parameters

    def train(
        self,
        model: nn.Module,
        data: LocalData,
        state: dict,
        trainer: LocalTrainer,
        ctx: RoundContext,
    ) -> None:
        trainer.train(model, data, generator=ctx.generator)


class AttackerBehaviour(Protocol):
    """Malicious behaviour of a client in an attack round (CONTRACT.md); ``parameter_constraints``
    declares the constructor's params, as for :class:`ClientDefense`."""

    parameter_constraints: ClassVar[Constraints]

    def train(
        self,
        model: nn.Module,
        data: LocalData,
        state: dict,
        trainer: LocalTrainer,
        ctx: RoundContext,
        trigger: Trigger,
        target: int,
        num_poison: int,
    ) -> None: ...


class StandardAttacker:
    """DBA/BadNets data poisoning: every mini-batch has its first ``num_poison`` samples stamped
    with the attacker's trigger (fldata.triggers.poison_batch) and relabelled to ``target``."""

    parameter_constraints: ClassVar[Constraints] = {}  # takes no parameters

    def train(
        self,
        model: nn.Module,
        data: LocalData,
        state: dict,
        trainer: LocalTrainer,
        ctx: RoundContext,
        trigger: Trigger,
        target: int,
        num_poison: int,
    ) -> None:
        def poison(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return poison_batch(images, labels, trigger, target, num_poison)

        trainer.train(model, data, augment=poison, generator=ctx.generator)


def trigger_on_device(
    trigger: Trigger, device: torch.device, dtype: torch.dtype = torch.float32
) -> Trigger:
    """The same trigger with mask/pattern as tensors on ``device`` (fldata stamps tensors too)."""
    # Trigger's fields are typed as numpy arrays (fldata is torch-free); stamp() is array-generic.
    return Trigger(
        mask=torch.as_tensor(trigger.mask, dtype=dtype, device=device),  # type: ignore[arg-type]
        pattern=torch.as_tensor(trigger.pattern, dtype=dtype, device=device),  # type: ignore[arg-type]
        name=trigger.name,
    )


CLIENT_DEFENSES: Registry[Callable[..., ClientDefense]] = Registry(
    "client defense",
    {
        "none": NoClientDefense,
        "flip": "deepfl.flip:FlipDefense",
    },
)

ATTACKER_BEHAVIOURS: Registry[Callable[..., AttackerBehaviour]] = Registry(
    "attacker behaviour",
    {
        "standard": StandardAttacker,
        "adaptive": "deepfl.flip:AdaptiveAttacker",
    },
)


def build_client_defense(
    name: str,
    params: dict[str, Any],
    true_trigger: Trigger | None = None,
    dataset: str | None = None,
) -> ClientDefense:
    """``CLIENT_DEFENSES[name](**params)``; the defense validates its own params (a config's
    params were checked against the defense's ``parameter_constraints`` when it was resolved).

    A defense whose constructor takes ``true_trigger`` receives the attack's full trigger (tensors
    on the device) for its explicitly named ground-truth options; it must not use it otherwise.
    One that takes ``dataset`` receives the run's data set name (per-data-set defaults).
    """
    cls = CLIENT_DEFENSES[name]
    if cls is NoClientDefense and params:
        raise ValueError(f"client defense 'none' takes no parameters, got {sorted(params)}")
    accepted = inspect.signature(cls.__init__).parameters
    extra: dict[str, Any] = {}
    if true_trigger is not None and "true_trigger" in accepted:
        extra["true_trigger"] = true_trigger
    if dataset is not None and "dataset" in accepted:
        extra["dataset"] = dataset
    return cls(**extra, **params)


def build_attacker(
    name: str, params: dict[str, Any], client_defense: ClientDefense | None = None
) -> AttackerBehaviour:
    """``ATTACKER_BEHAVIOURS[name](**params)``; one whose constructor takes ``client_defense``
    receives the run's client defense (the adaptive attacker inverts as the benign clients do)."""
    cls = ATTACKER_BEHAVIOURS[name]
    if cls is StandardAttacker and params:
        raise ValueError(f"attacker behaviour 'standard' takes no parameters, got {sorted(params)}")
    if "client_defense" in inspect.signature(cls.__init__).parameters:
        return cls(client_defense=client_defense, **params)
    return cls(**params)
