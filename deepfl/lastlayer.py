"""A network's output layer as the linear-softmax model of the theory, over its penultimate
features.

Every model of :mod:`deepfl.models` ends in ``output_layer: nn.Linear``, so its logits are
``z = W \\tilde\\phi(x)`` with ``\\phi(x)`` the input of that layer, ``\\tilde\\phi(x) = [\\phi(x);
1]`` and ``W = [weight | bias]`` (THEORY.md section 1 with the bias as a constant feature). These
helpers read ``\\tilde\\phi`` and ``W`` as float64 numpy arrays, write ``W`` back, and freeze every
other parameter so that a round trains the last layer only (issue 15, part a).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn


def output_layer(model: nn.Module) -> nn.Linear:
    """``model.output_layer`` (every deepfl model has one), checked to be an ``nn.Linear``."""
    layer = getattr(model, "output_layer", None)
    if not isinstance(layer, nn.Linear):
        raise TypeError(
            f"{type(model).__name__} has no nn.Linear output_layer; the last-layer probe needs one"
        )
    return layer


def has_batch_norm(model: nn.Module) -> bool:
    """True if the model normalises with batch statistics in training mode (its features then move
    with the mini-batch even when their weights are frozen)."""
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())


def float64_copy(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` (the theory's exact numbers need float64 features)."""
    return copy.deepcopy(model).double()


def _chunks(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, images.shape[0], batch_size):
        yield images[start : start + batch_size]


@torch.inference_mode()
def features_with_bias(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """``\\tilde\\phi(x) = [\\phi(x); 1]`` for every image, (N, D) float64: ``\\phi(x)`` is captured
    at the input of ``model.output_layer`` (eval mode), computed in the model's dtype."""
    dtype = next(model.parameters()).dtype
    captured: list[torch.Tensor] = []
    hook = output_layer(model).register_forward_pre_hook(
        lambda module, args: captured.append(args[0].detach())
    )
    was_training = model.training
    model.eval()
    try:
        for chunk in _chunks(images, batch_size):
            model(chunk.to(dtype))
    finally:
        hook.remove()
        model.train(was_training)
    phi = (
        torch.cat(captured).double().cpu().numpy()
        if captured
        else np.zeros((0, output_layer(model).in_features))
    )
    return np.concatenate([phi, np.ones((phi.shape[0], 1))], axis=1)


@torch.inference_mode()
def network_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """Logits of the whole network (eval mode, the model's dtype) as (N, c) float64."""
    dtype = next(model.parameters()).dtype
    was_training = model.training
    model.eval()
    try:
        chunks = [model(chunk.to(dtype)).double().cpu() for chunk in _chunks(images, batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, output_layer(model).out_features))


def output_matrix(model: nn.Module) -> np.ndarray:
    """``W = [weight | bias]`` of ``model.output_layer``, (c, D) float64."""
    layer = output_layer(model)
    weight = layer.weight.detach().double().cpu().numpy()
    bias = layer.bias.detach().double().cpu().numpy()
    return np.concatenate([weight, bias[:, None]], axis=1)


def set_output_matrix(model: nn.Module, W: np.ndarray) -> None:
    """Write ``W = [weight | bias]`` (c, D) into ``model.output_layer`` (cast to its dtype)."""
    layer = output_layer(model)
    expected = (layer.out_features, layer.in_features + 1)
    if W.shape != expected:
        raise ValueError(
            f"output matrix must have shape {expected} ([weight | bias]), got {W.shape}"
        )
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(W[:, :-1]))
        layer.bias.copy_(torch.as_tensor(W[:, -1]))


@contextlib.contextmanager
def only_output_layer_trains(model: nn.Module) -> Iterator[nn.Module]:
    """Inside: every parameter outside ``model.output_layer`` has ``requires_grad=False`` (its
    gradient stays None, so SGD, momentum and weight decay skip it); restored on exit."""
    trainable = {id(p) for p in output_layer(model).parameters()}
    before = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for parameter, _ in before:
            parameter.requires_grad_(id(parameter) in trainable)
        yield model
    finally:
        for parameter, flag in before:
            parameter.requires_grad_(flag)
