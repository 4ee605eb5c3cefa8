"""A compact ABS-style inverter (Liu et al. 2019) with FLIP's inversion interface (paper App. A.7).

Faithful in spirit, not a port of the released ABS binary. For one problem (sources -> target):

1. Neuron stimulation: record the penultimate-layer activations ``h`` (input of the model's last
   ``nn.Linear``) on up to 64 source samples; for every neuron ``j`` and stimulation value
   ``v in {1, 2, 4, 8} * max(h)`` the logits become ``z + (v - h_j) W[:, j]`` (exact, since the
   last layer is linear). The elevation of neuron ``j`` is
   ``max_v min_x (z_t - max_{c != t} z_c)``: how consistently raising ``j`` alone makes the
   target win. The ``abs_num_candidates`` (10) most elevating neurons are the candidates.
2. Trigger reverse engineering, all candidates of all problems in ONE batched optimisation
   (the stacked tanh mask/pattern of :mod:`.inversion`): minimise
   ``-mean h_j(A(x)) + 1e-4 * mean sum_{i != j} h_i(A(x)) + 50 * relu(|m|_1 - 0.06 H W) / (H W)``
   (activate the candidate neuron, not the others, mask at most 6% of the image), Adam as NC.
3. The candidates of a problem are returned sorted by attack accuracy toward the target (the
   "most likely candidate triggers"); FLIP hardens with all of them.

The CE loss toward the target of every stamped sample is tracked during step 2 (as in
:mod:`.inversion`), so an ABS inversion measures the same per-source loss variances as a
Neural-Cleanse one and feeds FLIP's distance matrix (App. A.7 replaces the inversion, not the
distance).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fldata.triggers import Trigger

from .config import FlipConfig
from .inversion import (
    InversionRequest,
    InversionResult,
    ProblemSampler,
    SourceLossTracker,
    TriggerVariables,
    _finite,
    image_shape,
    model_in_eval_mode,
)

__all__ = ["invert_abs_many", "output_layer"]

_STIMULATION_MULTIPLIERS = (1.0, 2.0, 4.0, 8.0)
_STIMULATION_SAMPLES = 64
_MAX_MASK_FRACTION = 0.06
_MASK_PENALTY = 50.0
_OTHER_NEURON_WEIGHT = 1e-4


def output_layer(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` (its input is the penultimate representation)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the ABS-style inverter needs a model whose output layer is an nn.Linear.")
    return linears[-1]


class _Penultimate:
    """Forward hook keeping the input of the output layer."""

    def __init__(self, layer: nn.Linear) -> None:
        self.value: torch.Tensor | None = None
        self.handle = layer.register_forward_hook(self._keep)

    def _keep(
        self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> None:
        self.value = inputs[0]

    def features(self) -> torch.Tensor:
        """The last forward pass's output-layer input, flattened to (N, D)."""
        if self.value is None:
            raise RuntimeError("no forward pass through the hooked layer yet")
        return self.value.flatten(1)

    def close(self) -> None:
        self.handle.remove()


def _candidate_neurons(
    model: nn.Module,
    layer: nn.Linear,
    hook: _Penultimate,
    images: torch.Tensor,
    target: int,
    count: int,
) -> torch.Tensor:
    """Step 1: indices of the ``count`` neurons whose stimulation most elevates ``target``."""
    with torch.no_grad():
        logits = model(images)
        h = hook.features()  # (N, D)
        weight = layer.weight  # (classes, D)
        values = h.max() * h.new_tensor(_STIMULATION_MULTIPLIERS)  # (V,)
        shift = values[None, None, :] - h[:, :, None]  # (N, D, V)
        stimulated = (
            logits[:, None, None, :] + shift[..., None] * weight.T[None, :, None, :]
        )  # (N, D, V, classes)
        target_logit = stimulated[..., target]
        others = stimulated.clone()
        others[..., target] = -torch.inf
        margin = target_logit - others.max(dim=-1).values  # (N, D, V)
        elevation = margin.min(dim=0).values.max(dim=-1).values  # (D,)
    return torch.topk(elevation, k=min(count, elevation.numel())).indices


def invert_abs_many(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    requests: Sequence[InversionRequest],
    *,
    config: FlipConfig | None = None,
    num_classes: int | None = None,
    steps: int | None = None,
) -> list[list[InversionResult]]:
    """For each request, up to ``config.abs_num_candidates`` candidate triggers, best first
    (``steps`` optimisation steps, default ``config.abs_steps``)."""
    config = config or FlipConfig()
    if not requests:
        return []
    mentioned = max(max(max(r.source_classes), r.target) for r in requests)
    num_classes = int(num_classes or max(int(labels.max()) + 1, mentioned + 1))
    layer = output_layer(model)
    hook = _Penultimate(layer)
    try:
        with model_in_eval_mode(model):
            return _invert(
                model,
                layer,
                hook,
                images,
                labels,
                requests,
                config,
                num_classes,
                config.abs_steps if steps is None else int(steps),
            )
    finally:
        hook.close()


def _invert(
    model: nn.Module,
    layer: nn.Linear,
    hook: _Penultimate,
    images: torch.Tensor,
    labels: torch.Tensor,
    requests: Sequence[InversionRequest],
    config: FlipConfig,
    num_classes: int,
    steps: int,
) -> list[list[InversionResult]]:
    """Steps 1-2 for all problems: candidate neurons, one batched trigger optimisation, ranking."""
    device, dtype = images.device, images.dtype
    neuron_of_problem, owners = _stimulated_candidates(
        model, layer, hook, images, labels, requests, config
    )
    problems = [requests[k] for k in owners]
    sampler = ProblemSampler(
        labels,
        [p.source_classes for p in problems],
        [p.seed * 100 + i for i, p in enumerate(problems)],
        config.batch_size,
        pools=[p.pool for p in problems],
    )
    variables = TriggerVariables.neutral(
        len(problems), image_shape(images), config.initial_mask_value, device, dtype
    )
    tracker = SourceLossTracker(steps, len(problems), num_classes, device, dtype)
    _optimise_triggers(
        model,
        hook,
        images,
        labels,
        problems,
        sampler,
        variables,
        tracker,
        neuron_of_problem,
        config,
        steps,
    )
    return _ranked_results(
        model,
        images,
        requests,
        problems,
        owners,
        sampler,
        variables,
        config,
        neuron_of_problem,
        tracker,
        steps,
    )


def _optimise_triggers(
    model: nn.Module,
    hook: _Penultimate,
    images: torch.Tensor,
    labels: torch.Tensor,
    problems: list[InversionRequest],
    sampler: ProblemSampler,
    variables: TriggerVariables,
    tracker: SourceLossTracker,
    neuron_of_problem: torch.Tensor,
    config: FlipConfig,
    steps: int,
) -> None:
    """Step 2: ``steps`` Adam steps on every candidate's trigger, tracking CE toward the target."""
    device, dtype = images.device, images.dtype
    owner = sampler.owner.to(device)
    counts = torch.as_tensor(sampler.batch_sizes, device=device, dtype=dtype)
    _, height, width = images.shape[1:]
    bound = _MAX_MASK_FRACTION * height * width
    area = height * width
    optimizer = torch.optim.Adam(
        variables.parameters(), lr=config.learning_rate, betas=config.betas
    )
    sample_targets = torch.as_tensor([p.target for p in problems], device=device)[owner]
    with torch.enable_grad():
        for step in range(steps):
            indices = sampler.draw()
            logits = model(variables.stamp(images[indices], owner))
            tracker.add(
                step,
                owner,
                labels[indices],
                torch.nn.functional.cross_entropy(
                    logits.detach(), sample_targets, reduction="none"
                ),
            )
            loss = _abs_loss(
                hook.features(), neuron_of_problem[owner], owner, counts, variables, bound, area
            )
            grads = torch.autograd.grad(loss, variables.parameters())
            for variable, grad in zip(variables.parameters(), grads, strict=True):
                variable.grad = grad
            optimizer.step()


def _stimulated_candidates(
    model: nn.Module,
    layer: nn.Linear,
    hook: _Penultimate,
    images: torch.Tensor,
    labels: torch.Tensor,
    requests: Sequence[InversionRequest],
    config: FlipConfig,
) -> tuple[torch.Tensor, list[int]]:
    """Step 1: the candidate neurons of every request, and the request each candidate belongs to."""
    probe_sampler = ProblemSampler(
        labels,
        [r.source_classes for r in requests],
        [r.seed for r in requests],
        1,
        pools=[r.pool for r in requests],
    )
    neurons, owners = [], []
    for k, (request, members) in enumerate(zip(requests, probe_sampler.members, strict=True)):
        probe = images[members[:_STIMULATION_SAMPLES].to(images.device)]
        chosen = _candidate_neurons(
            model, layer, hook, probe, request.target, config.abs_num_candidates
        )
        neurons.append(chosen)
        owners.extend([k] * chosen.numel())
    return torch.cat(neurons).to(images.device), owners


def _abs_loss(
    h: torch.Tensor,
    own_neuron: torch.Tensor,
    owner: torch.Tensor,
    counts: torch.Tensor,
    variables: TriggerVariables,
    bound: float,
    area: int,
) -> torch.Tensor:
    """Step 2's objective summed over problems: candidate activation, other neurons, mask size."""
    own = h.gather(1, own_neuron[:, None]).squeeze(1)
    others = h.sum(dim=1) - own
    per_problem = (
        torch.zeros(len(counts), device=h.device, dtype=h.dtype).index_add_(
            0, owner, -own + _OTHER_NEURON_WEIGHT * others
        )
        / counts
    )
    mask_l1 = variables.masks().sum(dim=(1, 2))
    return (per_problem + _MASK_PENALTY * torch.relu(mask_l1 - bound) / area).sum()


def _ranked_results(
    model: nn.Module,
    images: torch.Tensor,
    requests: Sequence[InversionRequest],
    problems: list[InversionRequest],
    owners: list[int],
    sampler: ProblemSampler,
    variables: TriggerVariables,
    config: FlipConfig,
    neuron_of_problem: torch.Tensor,
    tracker: SourceLossTracker,
    steps: int,
) -> list[list[InversionResult]]:
    masks, patterns = variables.masks().detach(), variables.patterns().detach()
    variances, sample_variances = tracker.variances()
    grouped: list[list[InversionResult]] = [[] for _ in requests]
    with torch.no_grad():
        for i, (problem, members) in enumerate(zip(problems, sampler.members, strict=True)):
            batch = images[members[:128].to(images.device)]
            logits = model(
                variables.stamp(
                    batch,
                    torch.full((batch.shape[0],), i, device=images.device, dtype=torch.long),
                    masks,
                    patterns,
                )
            )
            target = torch.full(
                (batch.shape[0],), problem.target, device=images.device, dtype=torch.long
            )
            attack_acc = float((logits.argmax(1) == target).float().mean())
            trigger = Trigger(
                np.clip(masks[i].cpu().double().numpy(), 0, 1),
                np.clip(patterns[i].cpu().double().numpy(), 0, 1),
                name=f"abs[{','.join(map(str, problem.source_classes))}->{problem.target}"
                f"|n{int(neuron_of_problem[i])}]",
            )
            grouped[owners[i]].append(
                InversionResult(
                    trigger=trigger,
                    target=problem.target,
                    source_classes=problem.source_classes,
                    success=attack_acc >= config.attack_success_threshold,
                    attack_acc=attack_acc,
                    final_loss=float(torch.nn.functional.cross_entropy(logits, target)),
                    mask_l1=float(masks[i].sum()),
                    steps=steps,
                    per_source_loss_variance=_finite(variances[i], problem.source_classes),
                    per_source_sample_variance=_finite(sample_variances[i], problem.source_classes),
                )
            )
    return [sorted(group, key=lambda r: -r.attack_acc) for group in grouped]
