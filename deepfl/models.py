"""Neural networks of the deep pipeline (ALGORITHMS.md, "Federated setup", Models).

- ``MnistCNN``: the paper's MNIST / Fashion-MNIST CNN,
  Conv(1->20, 5x5) ReLU MaxPool2, Conv(20->50, 5x5) ReLU MaxPool2, FC 800->500 ReLU, FC 500->10.
- ``ResNet18``: the CIFAR ResNet-18 (BasicBlock [2, 2, 2, 2], 3x3 stride-1 stem, no max-pool,
  global average pool, FC). ``base_width=32`` gives the released half-width 32/64/128/256,
  ``base_width=64`` the standard 64..512.
- ``LinearSoftmax``: logits = W vec(x) + b, the linear model of the theory setting (THEORY.md),
  so a deep run can mirror the linear engine.

Every model exposes ``output_layer: nn.Linear`` (FoolsGold's default feature set, CONTRACT.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MODEL_NAMES: tuple[str, ...] = ("cnn", "resnet18", "linear")


class MnistCNN(nn.Module):
    """The paper's 28x28 CNN (two 5x5 conv + max-pool stages, FC 800->500->classes)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        side = ((image_size - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, num_classes)

    @property
    def output_layer(self) -> nn.Linear:
        return self.fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18: stem 3x3/1, stages of BasicBlocks [2,2,2,2] with widths w, 2w, 4w, 8w, GAP,
    FC.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, base_width: int = 32) -> None:
        super().__init__()
        widths = [base_width * k for k in (1, 2, 4, 8)]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        in_planes = widths[0]
        for index, planes in enumerate(widths):
            stride = 1 if index == 0 else 2
            stages.append(
                nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1))
            )
            in_planes = planes
        self.layers = nn.Sequential(*stages)
        self.linear = nn.Linear(widths[-1], num_classes)

    @property
    def output_layer(self) -> nn.Linear:
        return self.linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


class LinearSoftmax(nn.Module):
    """Multinomial logistic regression: logits = W vec(x) + b (softmax applied by the loss)."""

    def __init__(self, in_features: int, num_classes: int = 10) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    @property
    def output_layer(self) -> nn.Linear:
        return self.linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def build_model(
    name: str, image_shape: tuple[int, int, int], num_classes: int, resnet_width: int = 32
) -> nn.Module:
    """Instantiate model ``name`` (one of MODEL_NAMES) for images of shape (C, H, W).

    Parameters are initialised by torch's default initialisers from the *current* global torch
    seed; the engine calls this under ``torch.random.fork_rng`` with a derived seed.
    """
    channels, height, width = image_shape
    if name == "cnn":
        if height != width or height < 16:
            raise ValueError(f"model 'cnn' needs square images of side >= 16, got {height}x{width}")
        return MnistCNN(channels, num_classes, height)
    if name == "resnet18":
        if resnet_width < 1:
            raise ValueError(
                "resnet_width must be >= 1 (32 = released half width, 64 = standard), got "
                f"{resnet_width}"
            )
        return ResNet18(channels, num_classes, resnet_width)
    if name == "linear":
        return LinearSoftmax(channels * height * width, num_classes)
    raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODEL_NAMES)}")
