"""Model hardening augments (paper section 3 "Model hardening", App. A.1).

Hardening is adversarial training on samples stamped with the inverted triggers that KEEP
their true labels. It is expressed as an ``augment(x, y) -> (x', y')`` given to the engine's
``LocalTrainer.train`` (deepfl/CONTRACT.md), so the engine's optimiser settings are used.

* :func:`append_augment` (paper): every mini-batch gets ``num_augmented`` (64) extra samples
  drawn from a pool of local samples stamped with the inverted triggers (true labels).
* :func:`replace_augment` (released code): in every mini-batch, a ``portion`` of the samples
  whose label is a hardened source class is stamped in place with that direction's trigger.

A :class:`StampDirection` says which local samples get which triggers: samples of the
``sources`` classes stamped with each of ``triggers`` (one label-specific trigger, the ABS
candidates, or a universal trigger on all non-target classes); ``sources=None`` stamps samples of
every class (oracle triggers of App. A.12).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from deepfl.client import Augment
from fldata.triggers import Trigger, stamp

__all__ = ["StampDirection", "Augment", "stamped_pool", "append_augment", "replace_augment"]


@dataclass(frozen=True)
class StampDirection:
    """Stamp the local samples of the ``sources`` classes (all classes if None) with each of ``triggers``."""

    sources: tuple[int, ...] | None
    triggers: tuple[Trigger, ...]

    def selects(self, labels: torch.Tensor) -> torch.Tensor:
        """Boolean (N,) mask of the samples this direction stamps."""
        if self.sources is None:
            return torch.ones_like(labels, dtype=torch.bool)
        return torch.isin(labels, labels.new_tensor(list(self.sources)))


def _stacked(triggers: Sequence[Trigger], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    masks = torch.stack([like.new_tensor(t.mask) for t in triggers])
    patterns = torch.stack([like.new_tensor(t.pattern) for t in triggers])
    return masks, patterns


def stamped_pool(images: torch.Tensor, labels: torch.Tensor,
                 directions: Sequence[StampDirection]) -> tuple[torch.Tensor, torch.Tensor]:
    """All local samples of each direction's source stamped with each of its triggers.

    Returns ``(images', labels')`` with the TRUE labels (paper section 3); empty if no direction
    has samples."""
    pool_x, pool_y = [images[:0]], [labels[:0]]
    for direction in directions:
        chosen = direction.selects(labels)
        x, y = images[chosen], labels[chosen]
        if x.shape[0] == 0 or not direction.triggers:
            continue
        masks, patterns = _stacked(direction.triggers, images)
        stamped = stamp(x.unsqueeze(0), masks[:, None, None], patterns[:, None])  # (T, n, C, H, W)
        pool_x.append(stamped.reshape(-1, *x.shape[1:]))
        pool_y.append(y.repeat(len(direction.triggers)))
    return torch.cat(pool_x), torch.cat(pool_y)


def append_augment(pool_images: torch.Tensor, pool_labels: torch.Tensor, num_augmented: int,
                   generator: torch.Generator) -> Augment:
    """Paper's hardening: append ``num_augmented`` pool samples (uniform, with replacement when the
    pool is smaller) to every mini-batch. An empty pool or ``num_augmented = 0`` leaves batches as is."""
    pool_size = int(pool_images.shape[0])

    def augment(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if pool_size == 0 or num_augmented == 0:
            return x, y
        if pool_size >= num_augmented:
            picks = torch.randperm(pool_size, generator=generator)[:num_augmented]
        else:
            picks = torch.randint(pool_size, (num_augmented,), generator=generator)
        picks = picks.to(pool_images.device)
        return (torch.cat([x, pool_images[picks].to(x.dtype)]), torch.cat([y, pool_labels[picks].to(y.dtype)]))

    return augment


def replace_augment(directions: Sequence[StampDirection], num_classes: int, portion: float,
                    generator: torch.Generator) -> Augment:
    """Released code's hardening: stamp, in place, each sample of a hardened source class with
    probability ``portion`` (one of its direction's triggers, chosen uniformly); labels unchanged.
    Directions with ``sources=None`` apply to every class."""
    triggers = [t for d in directions for t in d.triggers]
    by_class: list[list[int]] = [[] for _ in range(num_classes)]
    offset = 0
    for direction in directions:
        indices = list(range(offset, offset + len(direction.triggers)))
        offset += len(direction.triggers)
        for c in (range(num_classes) if direction.sources is None else direction.sources):
            by_class[c].extend(indices)
    width = max([len(ix) for ix in by_class] + [1])
    table = torch.tensor([ix + [0] * (width - len(ix)) for ix in by_class], dtype=torch.long)
    counts = torch.tensor([len(ix) for ix in by_class], dtype=torch.long)
    stacked: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def augment(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not triggers:
            return x, y
        key = (x.device, x.dtype)
        if key not in stacked:
            stacked[key] = _stacked(triggers, x)
        masks, patterns = stacked[key]
        y_cpu = y.detach().cpu()
        draw = torch.rand(y_cpu.shape[0], generator=generator)
        pick = torch.rand(y_cpu.shape[0], generator=generator)
        chosen = (counts[y_cpu] > 0) & (draw < portion)
        which = table[y_cpu, (pick * counts[y_cpu].clamp(min=1)).long().clamp(max=width - 1)]
        if not bool(chosen.any()):
            return x, y
        rows = torch.nonzero(chosen).flatten().to(x.device)
        which = which[chosen].to(x.device)
        stamped = x.clone()
        stamped[rows] = stamp(x[rows], masks[which].unsqueeze(1), patterns[which])
        return stamped, y

    return augment
