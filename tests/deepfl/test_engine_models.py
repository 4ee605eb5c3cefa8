"""Architectures (deepfl.models) and the flat state vector (deepfl.flat)."""

from __future__ import annotations

import pytest
import torch

from deepfl.flat import FlatState
from deepfl.models import build_model


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_mnist_cnn_has_the_papers_layers() -> None:
    model = build_model("cnn", (1, 28, 28), 10)
    # Conv(1->20,5x5) + Conv(20->50,5x5) + FC 800->500 + FC 500->10, with biases.
    assert count(model) == (20 * 25 + 20) + (50 * 20 * 25 + 50) + (800 * 500 + 500) + (
        500 * 10 + 10
    )
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_resnet18_widths() -> None:
    standard = build_model("resnet18", (3, 32, 32), 10, resnet_width=64)
    assert count(standard) == 11_173_962  # the usual CIFAR ResNet-18
    half = build_model("resnet18", (3, 32, 32), 10, resnet_width=32)
    assert half.output_layer.in_features == 256 and count(half) < count(standard) / 3.5
    assert half(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_linear_model_is_affine_softmax_regression() -> None:
    model = build_model("linear", (1, 28, 28), 10)
    assert count(model) == 784 * 10 + 10
    x = torch.rand(4, 1, 28, 28)
    expected = x.flatten(1) @ model.linear.weight.T + model.linear.bias
    assert torch.allclose(model(x), expected)


def test_unknown_model_lists_the_allowed_names() -> None:
    with pytest.raises(ValueError, match="cnn, resnet18, linear"):
        build_model("vgg", (1, 28, 28), 10)


def test_flat_state_includes_batchnorm_statistics_and_round_trips() -> None:
    model = build_model("resnet18", (3, 32, 32), 10, resnet_width=8)
    flat = FlatState(model)
    running = sum(b.numel() for name, b in model.named_buffers() if "running" in name)
    assert running > 0 and flat.layout.size == count(model) + running
    vector = torch.randn(flat.layout.size)
    flat.set(vector)
    assert torch.equal(flat.get(), vector)
    assert torch.equal(model.bn1.running_var, vector[flat.layout.slice_of("bn1.running_var")])


def test_output_layer_slice_covers_exactly_the_last_layer() -> None:
    model = build_model("cnn", (1, 28, 28), 10)
    flat = FlatState(model)
    coordinates = flat.output_layer_slice()
    expected = torch.cat([model.fc2.weight.reshape(-1), model.fc2.bias])
    assert torch.equal(flat.get()[coordinates], expected.detach())
    assert coordinates.stop == flat.layout.size
