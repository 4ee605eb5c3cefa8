"""Data -> clients: load a data set, carve out the FLTrust root set, partition, move to the device.

Pipeline (seeded, ALGORITHMS.md "Federated setup"): a uniform random subset of ``train_limit`` /
``test_limit`` images (fixed across run seeds, original order kept; some on-disk test sets are
sorted by class, so a prefix would not do); a uniformly drawn root set of ``root_set_size`` training
images, ALWAYS removed before partitioning whether or not the defense uses it (FLTrust does), so
that runs which differ only in the defense share the same clients, partition and attackers;
Dirichlet(alpha) or IID split over ``num_clients`` (fldata.partition). All client images live in ONE
float tensor on the device, ordered by client, and each client's LocalData is a view into it (no
per-client copies, no DataLoader).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from deepfl.attacks import full_trigger
from deepfl.client import LocalData, trigger_on_device
from deepfl.config import ExperimentConfig
from deepfl.evaluate import EvalSets
from deepfl.seeding import PARTITION, ROOT_SET, SUBSET, derive_seed, numpy_rng
from fldata.datasets import Dataset, load_dataset, to_float_chw
from fldata.partition import dirichlet_partition, iid_partition


@dataclass(frozen=True)
class Federation:
    clients: list[LocalData]
    root: LocalData | None  # FLTrust's server root set, or None
    eval_sets: EvalSets
    image_shape: tuple[int, int, int]
    num_classes: int


@functools.lru_cache(maxsize=2)
def _dataset(name: str) -> Dataset:
    """Decoded data set, kept for the process: several Experiments in one process (tests, sweeps)
    decode the IDX/binary files once. The arrays are never written to."""
    return load_dataset(name)


def _subset(
    images: np.ndarray, labels: np.ndarray, limit: int, split: int
) -> tuple[np.ndarray, np.ndarray]:
    """``limit`` images drawn uniformly without replacement (all if 0), the same for every run
    seed.
    """
    if not limit or limit >= len(labels):
        return images, labels
    index = np.sort(numpy_rng(SUBSET, split).choice(len(labels), limit, replace=False))
    return images[index], labels[index]


def _to_device(images: np.ndarray, labels: np.ndarray, device: torch.device) -> LocalData:
    return LocalData(
        torch.as_tensor(to_float_chw(images), device=device),
        torch.as_tensor(labels, dtype=torch.int64, device=device),
    )


def build_federation(
    cfg: ExperimentConfig, device: torch.device, with_root_set: bool
) -> Federation:
    """Clients' data, the optional root set and the evaluation sets for ``cfg``."""
    data = cfg.data
    dataset = _dataset(data.dataset)
    x_train, y_train = _subset(dataset.x_train, dataset.y_train, data.train_limit, split=0)
    x_test, y_test = _subset(dataset.x_test, dataset.y_test, data.test_limit, split=1)
    if cfg.attack.target >= dataset.num_classes:
        raise ValueError(
            f"attack.target must be < {dataset.num_classes} for {data.dataset}, got "
            f"{cfg.attack.target}"
        )

    remaining = np.arange(len(y_train))
    size = cfg.server.root_set_size
    if size >= len(remaining):
        raise ValueError(
            f"server.root_set_size={size} leaves no client data ({len(remaining)} training images)"
        )
    root_index = np.sort(numpy_rng(cfg.seed, ROOT_SET).choice(len(remaining), size, replace=False))
    remaining = np.setdiff1d(remaining, root_index)
    root = _to_device(x_train[root_index], y_train[root_index], device) if with_root_set else None

    partition_seed = derive_seed(cfg.seed, PARTITION)
    if data.partition == "dirichlet":
        parts = dirichlet_partition(
            y_train[remaining],
            data.num_clients,
            data.alpha,
            partition_seed,
            min_size=data.min_client_size,
        )
    else:
        parts = iid_partition(len(remaining), data.num_clients, partition_seed)
    order = remaining[np.concatenate(parts)]
    everyone = _to_device(x_train[order], y_train[order], device)
    bounds = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
    clients = [
        LocalData(everyone.images[a:b], everyone.labels[a:b])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]

    test = _to_device(x_test, y_test, device)
    trigger = trigger_on_device(full_trigger(cfg, dataset.image_shape), device)
    eval_sets = EvalSets.build(
        test.images, test.labels, trigger, cfg.attack.target, dataset.num_classes
    )
    return Federation(clients, root, eval_sets, dataset.image_shape, dataset.num_classes)
