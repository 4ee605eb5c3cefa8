"""Shared fixtures of the FLIP tests: a small conv net with a PLANTED DBA backdoor on real MNIST.

3,000 real MNIST training images; in every 64-sample batch the first 20 are stamped with the
full DBA trigger (fldata.triggers.dba_trigger) and relabelled to ``TARGET`` (0) by
fldata.triggers.poison_batch, as the attackers of the paper do. A few hundred SGD steps give
a model with high clean accuracy and a near-100% attack success rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pytest
import torch
from torch import nn

from fldata.datasets import load_dataset, to_float_chw
from fldata.triggers import Trigger, dba_trigger, poison_batch

TARGET = 0
NUM_TRAIN = 3000
NUM_TEST = 1000
TRAIN_STEPS = 300
SEED = 0


class SmallConvNet(nn.Module):
    """Conv(1->16,5) ReLU MaxPool2, Conv(16->32,5) ReLU MaxPool2, FC 512->64 ReLU, FC 64->10
    (a narrower version of the paper's MNIST CNN, for fast CPU tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass
class BackdooredSetup:
    model: SmallConvNet
    images: torch.Tensor  # (3000, 1, 28, 28) clean training slice
    labels: torch.Tensor
    test_images: torch.Tensor  # (1000, 1, 28, 28)
    test_labels: torch.Tensor
    trigger: Trigger  # the planted (ground-truth) trigger
    target: int

    def clone_model(self) -> SmallConvNet:
        return clone(self.model)


def clone(model: SmallConvNet) -> SmallConvNet:
    """A fresh copy of a fixture model (the shared ones must never be mutated)."""
    copy = SmallConvNet()
    copy.load_state_dict(model.state_dict())
    return copy


def train_backdoored_model(
    images: torch.Tensor,
    labels: torch.Tensor,
    trigger: Trigger,
    target: int,
    steps: int = TRAIN_STEPS,
    seed: int = SEED,
    num_poison: int = 20,
) -> SmallConvNet:
    """SGD (lr 0.05, momentum 0.9, batch 64) with ``num_poison``/64 of every batch poisoned to
    ``target`` (0: a clean model from the same initialisation and batches)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SmallConvNet()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        batch = torch.randint(images.shape[0], (64,), generator=generator)
        x, y = poison_batch(images[batch], labels[batch], trigger, target, num_poison)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    return model


@lru_cache(maxsize=1)
def make_backdoored_setup() -> BackdooredSetup:
    """Built once per process (test modules importing the fixture share it; never mutate it)."""
    data = load_dataset("mnist")
    images = torch.from_numpy(to_float_chw(data.x_train[:NUM_TRAIN]))
    labels = torch.from_numpy(np.asarray(data.y_train[:NUM_TRAIN], dtype=np.int64))
    test_images = torch.from_numpy(to_float_chw(data.x_test[:NUM_TEST]))
    test_labels = torch.from_numpy(np.asarray(data.y_test[:NUM_TEST], dtype=np.int64))
    trigger = dba_trigger(data.image_shape)
    model = train_backdoored_model(images, labels, trigger, TARGET)
    return BackdooredSetup(model, images, labels, test_images, test_labels, trigger, TARGET)


@lru_cache(maxsize=1)
def make_clean_model() -> SmallConvNet:
    """The backdoored setup's twin trained with no poisoned samples (shared; never mutate it)."""
    s = make_backdoored_setup()
    return train_backdoored_model(s.images, s.labels, s.trigger, s.target, num_poison=0)


def target_probability_on_triggered(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, trigger: Trigger, target: int
) -> float:
    """Mean softmax probability of ``target`` on stamped non-target images."""
    keep = labels != target
    with torch.no_grad():
        was_training = model.training
        model.eval()
        probs = torch.softmax(model(trigger.stamp(images[keep])), dim=1)
        model.train(was_training)
    return float(probs[:, target].mean())


@pytest.fixture(scope="session")
def backdoored_setup() -> BackdooredSetup:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return make_backdoored_setup()
