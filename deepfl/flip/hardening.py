"""Model hardening augments (paper section 3 "Model hardening", App. A.1).

Hardening is adversarial training on samples stamped with the inverted triggers that KEEP
their true labels. It is expressed as an ``augment(x, y) -> (x', y')`` given to the engine's
``LocalTrainer.train`` (deepfl/CONTRACT.md), so the engine's optimiser settings are used.

* :func:`append_augment` (paper): every mini-batch gets ``num_augmented`` (64) extra samples
  drawn from a pool of local samples stamped with the inverted triggers (true labels).
* :func:`replace_augment` (released code): in every mini-batch, ``int(portion * n)`` of the ``n``
  samples of a direction's source classes are stamped in place with its trigger; with a
  per-batch rule (``min_in_batch``) a direction is stamped only when the batch holds more than
  ``min_in_batch`` of its samples, the reverse direction of a pair only when the forward one is
  stamped too, and both directions of a symmetric pair stamp ``int(portion * min(n_s, n_t))``
  (the release's ``label_grt_min`` logic).
* :func:`rotating_augment`: hardening slots (a universal trigger, or a pair's one or two
  directions) held for a few mini-batches each, in turn (the release changes pair every 2 steps).

A :class:`StampDirection` says which local samples get which triggers: samples of the
``sources`` classes stamped with each of ``triggers`` (one label-specific trigger, the ABS
candidates, or a universal trigger on all non-target classes); ``sources=None`` stamps samples of
every class (oracle triggers of App. A.12).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from deepfl.client import Augment
from fldata.triggers import Trigger, stamp

__all__ = [
    "StampDirection",
    "Augment",
    "stamped_pool",
    "append_augment",
    "replace_augment",
    "rotating_augment",
]


@dataclass(frozen=True)
class StampDirection:
    """Stamp the local samples of the ``sources`` classes (all classes if None) with each of
    ``triggers``.

    ``target`` is the class the triggers were inverted toward (None for oracle triggers)."""

    sources: tuple[int, ...] | None
    triggers: tuple[Trigger, ...]
    target: int | None = None

    def selects(self, labels: torch.Tensor) -> torch.Tensor:
        """Boolean (N,) mask of the samples this direction stamps."""
        if self.sources is None:
            return torch.ones_like(labels, dtype=torch.bool)
        return torch.isin(labels, labels.new_tensor(list(self.sources)))


def _stacked(triggers: Sequence[Trigger], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks and patterns of ``triggers`` (numpy arrays or tensors) as tensors with ``like``'s dtype
    and device."""
    masks = torch.stack([torch.as_tensor(t.mask).to(like) for t in triggers])
    patterns = torch.stack([torch.as_tensor(t.pattern).to(like) for t in triggers])
    return masks, patterns


def stamped_pool(
    images: torch.Tensor, labels: torch.Tensor, directions: Sequence[StampDirection]
) -> tuple[torch.Tensor, torch.Tensor]:
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


def append_augment(
    pool_images: torch.Tensor,
    pool_labels: torch.Tensor,
    num_augmented: int,
    generator: torch.Generator,
) -> Augment:
    """Paper's hardening: append ``num_augmented`` pool samples (uniform, with replacement when the
    pool is smaller) to every mini-batch. An empty pool or ``num_augmented = 0`` leaves batches as
    is."""
    pool_size = int(pool_images.shape[0])

    def augment(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if pool_size == 0 or num_augmented == 0:
            return x, y
        if pool_size >= num_augmented:
            picks = torch.randperm(pool_size, generator=generator)[:num_augmented]
        else:
            picks = torch.randint(pool_size, (num_augmented,), generator=generator)
        picks = picks.to(pool_images.device)
        return (
            torch.cat([x, pool_images[picks].to(x.dtype)]),
            torch.cat([y, pool_labels[picks].to(y.dtype)]),
        )

    return augment


def replace_augment(
    directions: Sequence[StampDirection],
    num_classes: int,
    portion: float,
    generator: torch.Generator,
    min_in_batch: int | None = None,
) -> Augment:
    """Released code's hardening: stamp, in place, ``int(portion * n)`` of the ``n`` batch samples
    of each direction's source classes (one of its triggers per sample, uniformly); labels kept.

    ``min_in_batch`` (None = stamp whatever the batch holds) is the release's per-batch rule
    (module docstring): ``directions`` then form ONE pair, forward first. Samples already stamped
    by an earlier direction are not stamped again."""
    del num_classes  # kept for the call signature; the directions name their classes
    stacked: dict[tuple[torch.device, torch.dtype], list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def augment(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y_cpu = y.detach().cpu()
        chosen = [direction.selects(y_cpu) for direction in directions]
        lengths = _stamp_lengths([int(c.sum()) for c in chosen], portion, min_in_batch)
        if not any(lengths):
            return x, y
        key = (x.device, x.dtype)
        if key not in stacked:
            stacked[key] = [_stacked(d.triggers, x) for d in directions]
        stamped, free = x.clone(), torch.ones_like(y_cpu, dtype=torch.bool)
        for (masks, patterns), rows, length in zip(stacked[key], chosen, lengths, strict=True):
            candidates = torch.nonzero(rows & free).flatten()
            picks = candidates[torch.randperm(candidates.numel(), generator=generator)[:length]]
            if picks.numel() == 0:
                continue
            which = torch.randint(masks.shape[0], (picks.numel(),), generator=generator).to(
                x.device
            )
            free[picks] = False
            picks = picks.to(x.device)
            stamped[picks] = stamp(x[picks], masks[which].unsqueeze(1), patterns[which])
        return stamped, y

    return augment


def _stamp_lengths(counts: list[int], portion: float, min_in_batch: int | None) -> list[int]:
    """How many samples each direction stamps in one batch (``replace_augment``)."""
    if min_in_batch is None:
        return [int(count * portion) for count in counts]
    if not counts or counts[0] <= min_in_batch:
        return [0] * len(counts)  # the source is not in this batch: nothing
    if len(counts) > 1 and all(count > min_in_batch for count in counts[1:]):
        return [int(min(counts) * portion)] * len(counts)  # symmetric in this batch
    return [int(counts[0] * portion)] + [0] * (len(counts) - 1)  # asymmetric in this batch


def rotating_augment(once: Sequence[Augment], cycle: Sequence[Augment], hold: int) -> Augment:
    """Batch ``b`` uses ``once[b]`` for the first ``len(once)`` batches (one each), then
    ``cycle[j]`` for ``hold`` batches each, cycling; the identity when there is nothing left."""
    calls = [0]

    def augment(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = calls[0]
        calls[0] += 1
        if index < len(once):
            return once[index](x, y)
        if not cycle:
            return x, y
        return cycle[((index - len(once)) // hold) % len(cycle)](x, y)

    return augment
