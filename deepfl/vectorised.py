"""Vectorised local training: the clients of a round that share an architecture and optimiser
settings train as ONE batched model (torch.func), instead of one after another.

The working model's state is stacked along a new leading client axis and every step evaluates

    g_i = grad_w CE(f_{w_i}(x'_i), y'_i)          for all clients i of a step at once,

with ``vmap(grad(functional_call))``. BatchNorm running statistics are per-client buffers, updated
in place under vmap. The optimiser is torch.optim.SGD (dampening 0, no Nesterov) written over the
stacked tensors, step t = 0, 1, ... of client i:

    d_i = g_i + lambda w_i;   b_i = d_i (t = 0) else mu b_i + d_i;   w_i <- w_i - lr b_i.

Each client draws its per-epoch permutations from its own generator exactly as
``LocalTrainer.train`` does and its mini-batch goes through its own ``augment`` (DBA poisoning with
the attacker's trigger piece), so the vectorised and the sequential trainer see the same batches
and differ only in float rounding (batched kernels sum in another order).

Step schedule: client i takes S_i = epochs * ceil(n_i / B) steps. Clients are sorted by S_i
(descending), so those still training at step t are a prefix and finished clients cost nothing.
The active clients of a step are split by the size of their current mini-batch (the last batch of
an epoch is smaller) and each size class is one vmap call: no padding, so losses and BatchNorm
statistics see exactly the real samples. (Masking finished clients with torch.where would keep
paying for their forward and backward passes; padding short batches would bias BatchNorm.)
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from deepfl.attacks import RoundPlan
from deepfl.client import Augment, LocalData, NoClientDefense, StandardAttacker
from deepfl.config import TrainConfig
from deepfl.flat import StateLayout
from deepfl.seeding import CLIENT_TRAINING, torch_generator
from fldata.triggers import poison_batch

if TYPE_CHECKING:
    from deepfl.runner import Experiment

Rows = slice | torch.Tensor  # clients of one vmap call: a contiguous range (views) or an index


class NotVectorisable(RuntimeError):
    """The model cannot be trained as a batched population with results equal to sequential
    training.
    """


@dataclass(frozen=True)
class ClientTask:
    """One client's local run: its data, its permutation generator and its mini-batch
    ``augment``.
    """

    data: LocalData
    generator: torch.Generator
    augment: Augment | None = None


def batch_indices(task: ClientTask, settings: TrainConfig) -> list[torch.Tensor]:
    """The sample indices of every step, drawn exactly as ``LocalTrainer.train`` draws them:
    one ``torch.randperm(n, generator)`` on the CPU per epoch, cut into ``batch_size`` chunks."""
    count, device = len(task.data), task.data.images.device
    steps: list[torch.Tensor] = []
    for _ in range(settings.epochs):
        order = torch.randperm(count, generator=task.generator, device="cpu").to(device)
        steps.extend(
            order[start : start + settings.batch_size]
            for start in range(0, count, settings.batch_size)
        )
    return steps


def unsupported_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot be vectorised exactly, or None.

    Dropout would need per-client random masks; BatchNorm with ``momentum=None`` (cumulative
    average) reads ``num_batches_tracked``, which the sequential trainer carries across clients.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            return (
                f"{name} is a dropout layer (per-client random masks are not drawn as sequential "
                "training draws them)"
            )
        if (
            isinstance(module, nn.modules.batchnorm._BatchNorm)
            and module.training
            and module.momentum is None
        ):
            return (
                f"{name} is a BatchNorm with momentum=None (cumulative average over "
                "num_batches_tracked)"
            )
    return None


class VectorisedTrainer:
    """Local SGD of many clients of one architecture as a single vmapped model."""

    def __init__(self, model: nn.Module) -> None:
        reason = unsupported_reason(model)
        if reason is not None:
            raise NotVectorisable(f"{type(model).__name__} cannot be trained vectorised: {reason}")
        self.layout = StateLayout.of(model)
        state = model.state_dict()
        self.param_names = tuple(name for name, _ in model.named_parameters())
        self.buffer_names = tuple(name for name in state if name not in self.param_names)
        self.fixed = {
            name: state[name].detach().clone() for name in state if name not in self.layout.names
        }
        self.template = copy.deepcopy(model).to("meta").train()
        # Images arrive as (b, g, C, H, W): vmap's grouped convolution wants the clients next to
        # the channels, so the first convolution reads them without a copy (measured ~5% faster).
        self._grads = vmap(grad(self._loss), in_dims=(0, 0, 1, 0))
        # batched steps (vmap calls) since construction: the cost unit on an overhead-bound device
        self.calls = 0

    def probe(
        self, image_shape: tuple[int, int, int], num_classes: int, device: torch.device
    ) -> None:
        """Train two tiny clients of random data (4 and 2 samples, batches of 2) on ``device``;
        raise NotVectorisable when a batching rule the model needs is missing there, so the engine
        falls back to sequential training before the run starts instead of failing mid-run."""
        generator = torch.Generator().manual_seed(0)
        tasks = [
            ClientTask(
                LocalData(
                    torch.rand(size, *image_shape, generator=generator).to(device),
                    torch.randint(num_classes, (size,), generator=generator).to(device),
                ),
                torch.Generator().manual_seed(size),
            )
            for size in (4, 2)
        ]
        start = 0.01 * torch.randn(self.layout.size, generator=generator).to(device)
        try:
            self.train(start, tasks, TrainConfig(batch_size=2, epochs=1))
        except (RuntimeError, NotImplementedError) as error:
            raise NotVectorisable(
                f"a batched training step failed on {device}: {type(error).__name__}: {error}"
            ) from error

    def _loss(
        self,
        params: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor],
        images: torch.Tensor,
        labels: torch.Tensor,
    ) -> torch.Tensor:
        """CE(f_w(x), y), the mean over one client's mini-batch (BatchNorm buffers updated in
        place).
        """
        return F.cross_entropy(functional_call(self.template, (params, buffers), (images,)), labels)

    def train(
        self, start: torch.Tensor, tasks: list[ClientTask], settings: TrainConfig
    ) -> torch.Tensor:
        """Train every task from ``start`` ((d,) shared, or (k, d) one per task); return the final
        flat states (k, d) in task order (deepfl.flat layout)."""
        schedules = [batch_indices(task, settings) for task in tasks]
        order = sorted(
            range(len(tasks)), key=lambda i: -len(schedules[i])
        )  # active clients = a prefix
        tasks, schedules = [tasks[i] for i in order], [schedules[i] for i in order]
        if start.dim() == 2:
            start = start[order]
        state = self._stack(start, len(tasks))
        momentum = {name: torch.zeros_like(state[name]) for name in self.param_names}
        for step in range(max((len(s) for s in schedules), default=0)):
            active = sum(len(s) > step for s in schedules)
            for rows in _rows_by_batch_size(
                [len(schedules[i][step]) for i in range(active)], start.device
            ):
                images, labels = _gather(tasks, schedules, rows, step)
                self._step(state, momentum, rows, images, labels, settings, first=step == 0)
                self.calls += 1
        final = self._flatten(state)
        return final[torch.argsort(torch.tensor(order, device=final.device))]

    def _stack(self, start: torch.Tensor, count: int) -> dict[str, torch.Tensor]:
        """Per-client copies of every state entry: (count, *shape), from a (d,) or (count, d)
        vector.
        """
        rows = start.expand(count, -1) if start.dim() == 1 else start
        state = {}
        for name, shape, offset in zip(
            self.layout.names, self.layout.shapes, self.layout.offsets, strict=True
        ):
            state[name] = rows[:, offset : offset + shape.numel()].reshape(count, *shape).clone()
        for name, tensor in self.fixed.items():
            state[name] = tensor.to(start.device).expand(count, *tensor.shape).clone()
        return state

    def _flatten(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """(count, d) flat states in the layout order of deepfl.flat."""
        return torch.cat([state[name].flatten(1) for name in self.layout.names], dim=1)

    def _step(
        self,
        state: dict[str, torch.Tensor],
        momentum: dict[str, torch.Tensor],
        rows: Rows,
        images: torch.Tensor,
        labels: torch.Tensor,
        settings: TrainConfig,
        first: bool,
    ) -> None:
        """One SGD step of the clients ``rows`` (torch.optim.SGD's update, see the module
        docstring).
        """
        part = {
            name: tensor[rows] for name, tensor in state.items()
        }  # views for a slice, copies otherwise
        params = {name: part[name] for name in self.param_names}
        buffers = {name: part[name] for name in self.buffer_names}
        grads = self._grads(params, buffers, images, labels)
        weights = [params[name] for name in self.param_names]
        steps = [grads[name] for name in self.param_names]
        if settings.weight_decay != 0:
            steps = list(torch._foreach_add(steps, weights, alpha=settings.weight_decay))
        if settings.momentum != 0:
            buffers_of_rows = [momentum[name][rows] for name in self.param_names]
            if first:
                torch._foreach_copy_(buffers_of_rows, steps)
            else:
                torch._foreach_mul_(buffers_of_rows, settings.momentum)
                torch._foreach_add_(buffers_of_rows, steps)
            steps = buffers_of_rows
            if isinstance(rows, torch.Tensor):
                for name, tensor in zip(self.param_names, buffers_of_rows, strict=True):
                    momentum[name].index_copy_(0, rows, tensor)
        torch._foreach_add_(weights, steps, alpha=-settings.lr)
        if isinstance(rows, torch.Tensor):
            for name, tensor in part.items():
                state[name].index_copy_(0, rows, tensor)


def _rows_by_batch_size(sizes: list[int], device: torch.device) -> list[Rows]:
    """Clients 0..len(sizes)-1 grouped by mini-batch size: a slice when contiguous, else an
    index.
    """
    groups: dict[int, list[int]] = {}
    for row, size in enumerate(sizes):
        groups.setdefault(size, []).append(row)
    out: list[Rows] = []
    for rows in groups.values():
        contiguous = rows == list(range(rows[0], rows[-1] + 1))
        out.append(
            slice(rows[0], rows[-1] + 1) if contiguous else torch.tensor(rows, device=device)
        )
    return out


def _gather(
    tasks: list[ClientTask], schedules: list[list[torch.Tensor]], rows: Rows, step: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked (augmented) mini-batches of ``rows`` at ``step``: images (b, g, C, H, W), labels (g,
    b).
    """
    indices = range(len(tasks))[rows] if isinstance(rows, slice) else rows.tolist()
    images, labels = [], []
    for i in indices:
        index, augment = schedules[i][step], tasks[i].augment
        x, y = tasks[i].data.images[index], tasks[i].data.labels[index]
        if augment is not None:
            x, y = augment(x, y)
        images.append(x)
        labels.append(y)
    return torch.stack(images, dim=1), torch.stack(labels)


@dataclass(frozen=True)
class ClientGroup:
    """Clients of a round trained together: rows of the round's update matrix, same settings."""

    settings: TrainConfig
    rows: list[int]
    tasks: list[ClientTask]
    scale: float = 1.0  # factor applied to the updates (attack.scale for attackers)


def round_groups(experiment: Experiment, plan: RoundPlan) -> list[ClientGroup]:
    """The vectorisable clients of ``plan``: standard attackers (attack settings, DBA poisoning
    with their own trigger piece) and plain benign clients (benign settings). Clients with a client
    defense other than "none" (FLIP) or an attacker behaviour other than "standard" are left out
    and trained sequentially by the engine."""
    cfg, clients = experiment.cfg, experiment.federation.clients
    plain_benign = plan.phase == "pretrain" or type(experiment.client_defense) is NoClientDefense
    standard_attack = type(experiment.attacker) is StandardAttacker
    benign = ClientGroup(cfg.benign, [], [])
    attack = ClientGroup(cfg.attack.train_config(), [], [], cfg.attack.scale)
    for row, client in enumerate(plan.clients):
        generator = torch_generator(cfg.seed, plan.round, client, CLIENT_TRAINING)
        if client in plan.attackers and standard_attack:
            poison = functools.partial(
                poison_batch,
                trigger=experiment.triggers[plan.attackers[client]],
                target=cfg.attack.target,
                num_poison=cfg.attack.num_poison,
            )
            attack.rows.append(row)
            attack.tasks.append(ClientTask(clients[client], generator, poison))
        elif client not in plan.attackers and plain_benign:
            benign.rows.append(row)
            benign.tasks.append(ClientTask(clients[client], generator))
    return [group for group in (attack, benign) if group.rows]


def train_groups(
    trainer: VectorisedTrainer,
    groups: list[ClientGroup],
    start: torch.Tensor,
    updates: torch.Tensor,
) -> set[int]:
    """Train each group from the global state ``start`` and write Delta_i = scale * (w_i - start)
    into ``updates[row]`` (the same arithmetic as the sequential engine); return the rows
    written."""
    done: set[int] = set()
    for group in groups:
        final = trainer.train(start, group.tasks, group.settings)
        for row, state in zip(group.rows, final, strict=True):
            torch.sub(state, start, out=updates[row])
            if group.scale != 1.0:
                updates[row] *= group.scale
        done.update(group.rows)
    return done
