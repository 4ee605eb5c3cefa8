"""Neural-Cleanse-style trigger inversion, batched over K independent problems (paper section 3).

One inversion problem ``k`` = (source classes S_k, target t_k): find a mask ``m_k`` (H x W,
shared over channels) and a pattern ``p_k`` (C x H x W), both in [0, 1] through the tanh
parametrisation ``m = (tanh(a) + 1) / 2``, minimising (paper eq. 2, Neural Cleanse)

    L_k = mean_{x in batch of S_k} CE(f((1 - m_k) * x + m_k * p_k), t_k) + c_k * |m_k|_1

with the stamping of paper eq. 1 done by :func:`fldata.triggers.stamp` (the one stamping
implementation). K problems are solved in ONE optimisation: the K masks / patterns are stacked,
every problem's mini-batch is stamped with its own trigger, one forward pass runs over the
concatenation and the loss is ``sum_k L_k``. Since ``L_k`` depends only on ``(m_k, p_k)`` and
Adam is element-wise, each problem's trajectory is exactly the one it would have alone (same
seed), up to float round-off of the batched forward pass.

Neural Cleanse's cost schedule, per problem: ``c = init_cost`` (1e-3); after ``patience`` (10)
consecutive steps whose attack accuracy on the step's batch is ``>= attack_success_threshold``
(0.9 MNIST / 0.85 CIFAR) ``c *= 1.5``; after ``patience`` consecutive steps below it
``c /= 1.5 ** 1.5``. The smallest successful mask seen is returned (the last one if none
succeeded, flagged ``success=False``). Adam(lr 0.1, betas (0.5, 0.9)) on the tanh logits.

Per-source loss variance (the paper's class distance, section 3 "Cached Warm-up"), two readings
(:class:`SourceLossTracker`): the variance over optimisation steps of the mean CE loss toward
``t_k`` of each source class's samples (``per_source_loss_variance``, the paper mode's), and the
variance over the source's samples of their CE loss, averaged over the steps
(``per_source_sample_variance``).

No knowledge of the true trigger is used unless the caller passes ``init_trigger`` explicitly
(the ``init_at_true_location_LEAK`` option of :class:`~deepfl.flip.config.FlipConfig`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fldata.inversion import InversionResult
from fldata.triggers import Trigger, stamp

from .config import FlipConfig

__all__ = [
    "InversionRequest",
    "InversionResult",
    "invert",
    "invert_many",
    "TriggerVariables",
    "ProblemSampler",
    "model_in_eval_mode",
    "SourceLossTracker",
    "inversion_model",
]

_TANH_EPS = 1e-6
_EVAL_SAMPLES = 128  # per problem, for the reported attack_acc / final_loss


@dataclass(frozen=True)
class InversionRequest:
    """One problem of a batched inversion: flip samples of ``source_classes`` to ``target``.

    ``init_trigger`` (optional) sets the starting mask/pattern (warm starts, the
    ``leak_true_trigger_box`` option); ``seed`` drives this problem's own mini-batch sampler, so
    its result does not depend on which other problems share the optimisation. ``pool``
    (optional) restricts the problem to rows ``[start, stop)`` of the images: one client's data
    inside several clients' concatenated pools (batched FLIP over a round's clients).
    """

    source_classes: tuple[int, ...]
    target: int
    seed: int = 0
    init_trigger: Trigger | None = None
    pool: tuple[int, int] | None = None


class model_in_eval_mode:
    """Context manager: ``model.eval()`` inside (BatchNorm uses running stats, so samples stay
    independent across problems), the previous training flag restored on exit."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> torch.nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def inversion_model(model: torch.nn.Module) -> torch.nn.Module:
    """The network an inversion differentiates through: ``model`` itself, or on CPU, when it has
    convolutions, a frozen eval-mode copy in channels-last memory format (oneDNN's fast
    convolution layout: 1.5-1.8x faster inversion steps for the MNIST CNN on one core, measured
    in bench/flip_client.py). Only gradients w.r.t. the trigger are ever taken, and the copy's
    parameters do not require any."""
    convolutional = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    parameter = next(model.parameters(), None)
    if not convolutional or parameter is None or parameter.device.type != "cpu":
        return model
    # Module.to takes memory_format at run time; torch's stubs do not list it
    copy = deepcopy(model).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    for weight in copy.parameters():
        weight.requires_grad_(False)
    return copy


def image_shape(images: torch.Tensor) -> tuple[int, int, int]:
    """``(C, H, W)`` of a batch of images ``(N, C, H, W)``."""
    channels, height, width = (int(s) for s in images.shape[1:])
    return channels, height, width


class TriggerVariables:
    """K stacked triggers in tanh parametrisation: ``m = (tanh(a) + 1) / 2`` (mask K x H x W),
    ``p = (tanh(b) + 1) / 2`` (pattern K x C x H x W)."""

    def __init__(self, mask_init: torch.Tensor, pattern_init: torch.Tensor) -> None:
        self.mask_logits = _atanh_unit(mask_init).requires_grad_(True)
        self.pattern_logits = _atanh_unit(pattern_init).requires_grad_(True)

    @classmethod
    def neutral(
        cls,
        count: int,
        image_shape: tuple[int, int, int],
        mask_value: float,
        device: torch.device,
        dtype: torch.dtype,
    ) -> TriggerVariables:
        """K triggers with mask ``mask_value`` everywhere and pattern 0.5 (no prior on location)."""
        channels, height, width = image_shape
        mask = torch.full((count, height, width), float(mask_value), device=device, dtype=dtype)
        pattern = torch.full((count, channels, height, width), 0.5, device=device, dtype=dtype)
        return cls(mask, pattern)

    def parameters(self) -> list[torch.Tensor]:
        return [self.mask_logits, self.pattern_logits]

    def masks(self) -> torch.Tensor:
        return (torch.tanh(self.mask_logits) + 1) / 2

    def patterns(self) -> torch.Tensor:
        return (torch.tanh(self.pattern_logits) + 1) / 2

    def stamp(
        self,
        images: torch.Tensor,
        owner: torch.Tensor,
        masks: torch.Tensor | None = None,
        patterns: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Stamp sample ``i`` with trigger ``owner[i]`` (paper eq. 1 via fldata.triggers.stamp)."""
        masks = self.masks() if masks is None else masks
        patterns = self.patterns() if patterns is None else patterns
        return stamp(images, masks[owner].unsqueeze(1), patterns[owner])

    def set_row(self, index: int, trigger: Trigger) -> None:
        """Overwrite problem ``index``'s starting point with ``trigger`` (before optimisation)."""
        with torch.no_grad():
            like = self.mask_logits
            mask = torch.as_tensor(trigger.mask, dtype=like.dtype, device=like.device)
            pattern = torch.as_tensor(trigger.pattern, dtype=like.dtype, device=like.device)
            self.mask_logits[index] = _atanh_unit(mask)
            self.pattern_logits[index] = _atanh_unit(pattern)


class ProblemSampler:
    """Per-problem mini-batches drawn from one local data pool.

    Problem ``k`` owns the pool indices ``members[k]`` (its source classes, inside its
    ``pools[k]`` row range when given); each step it draws ``min(batch_size, n_k)``
    of them without replacement with its OWN ``torch.Generator(seed_k)`` (CPU), so the draws of a
    problem are the same whether it is solved alone or batched with others.
    """

    def __init__(
        self,
        labels: torch.Tensor,
        sources: Sequence[Sequence[int]],
        seeds: Sequence[int],
        batch_size: int,
        pools: Sequence[tuple[int, int] | None] | None = None,
    ) -> None:
        labels_cpu = labels.detach().cpu()
        self.members: list[torch.Tensor] = []
        for classes, pool in zip(sources, pools or [None] * len(sources), strict=True):
            selected = torch.isin(
                labels_cpu, torch.as_tensor(list(classes), dtype=labels_cpu.dtype)
            )
            if pool is not None:
                inside = torch.zeros_like(selected)
                inside[pool[0] : pool[1]] = True
                selected &= inside
            self.members.append(torch.nonzero(selected).flatten())
        empty = [k for k, m in enumerate(self.members) if m.numel() == 0]
        if empty:
            raise ValueError(
                f"inversion problems {empty} have no local samples of their source classes "
                f"{[tuple(sources[k]) for k in empty]}; pass "
                "only problems whose sources are present."
            )
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.batch_sizes = [min(int(batch_size), int(m.numel())) for m in self.members]
        self.owner = torch.repeat_interleave(
            torch.arange(len(self.members)), torch.as_tensor(self.batch_sizes)
        )
        self.device = labels.device

    def draw(self) -> torch.Tensor:
        """Concatenated pool indices of one step's mini-batches (problem order)."""
        picks = [
            members[torch.randperm(members.numel(), generator=gen)[:size]]
            for members, gen, size in zip(
                self.members, self.generators, self.batch_sizes, strict=True
            )
        ]
        return torch.cat(picks).to(self.device)


class SourceLossTracker:
    """Per-step sums of the CE loss (and its square) of each (problem, source class), for the two
    readings of the paper's loss-variance distance (module docstring)."""

    def __init__(
        self, steps: int, count: int, num_classes: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.count, self.num_classes = count, num_classes
        self.sums = torch.zeros(steps, count * num_classes, device=device, dtype=dtype)
        self.squares = torch.zeros_like(self.sums)
        self.counts = torch.zeros_like(self.sums)

    def add(self, step: int, owner: torch.Tensor, classes: torch.Tensor, ce: torch.Tensor) -> None:
        """Record step ``step``'s per-sample losses ``ce`` of problems ``owner`` on classes
        ``classes``.
        """
        slot = owner * self.num_classes + classes
        ce = ce.detach()
        self.sums[step].index_add_(0, slot, ce)
        self.squares[step].index_add_(0, slot, ce * ce)
        self.counts[step].index_add_(0, slot, torch.ones_like(ce))

    def variances(self) -> tuple[np.ndarray, np.ndarray]:
        """((K, C) variance over steps of the step means, (K, C) mean over steps of the variance
        over samples); NaN where fewer than 2 steps (resp. no step with 2 samples) saw the class."""
        over_steps = _per_source_variance(self.sums, self.counts, self.count, self.num_classes)
        sums, squares, counts = (
            t.detach().double().cpu().numpy() for t in (self.sums, self.squares, self.counts)
        )
        several = counts >= 2
        safe = np.maximum(counts, 1)
        within = np.where(several, squares / safe - (sums / safe) ** 2, 0.0).clip(min=0.0)
        num = several.sum(axis=0)
        over_samples = np.where(num > 0, within.sum(axis=0) / np.maximum(num, 1), np.nan)
        return over_steps, over_samples.reshape(self.count, self.num_classes)


def invert(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    source_classes: Sequence[int],
    target: int,
    *,
    config: FlipConfig | None = None,
    steps: int | None = None,
    seed: int = 0,
    init_trigger: Trigger | None = None,
) -> InversionResult:
    """Invert one trigger flipping ``source_classes`` to ``target`` (universal when the sources
    are all non-target classes, label-specific for one source). See the module docstring."""
    request = InversionRequest(
        tuple(int(s) for s in source_classes), int(target), seed, init_trigger
    )
    return invert_many(model, images, labels, [request], config=config, steps=steps)[0]


def invert_many(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    requests: Sequence[InversionRequest],
    *,
    config: FlipConfig | None = None,
    steps: int | None = None,
    num_classes: int | None = None,
) -> list[InversionResult]:
    """Solve K independent inversion problems in ONE batched optimisation (module docstring).

    Args:
        model: classifier returning logits; put in eval mode for the duration, never updated.
        images: (N, C, H, W) float pool in [0, 1] (on the model's device): one client's local
            data, or several clients' concatenated (each request then names its ``pool`` rows).
        labels: (N,) int64 true labels of the pool.
        requests: the K problems; each uses the pool samples whose label is in its sources.
        config: schedule constants (defaults: :class:`FlipConfig`).
        steps: optimisation steps (default ``config.pair_steps``).
        num_classes: label range for the per-source statistics (default ``max(labels) + 1``
            or the largest class mentioned by a request).
    """
    config = config or FlipConfig()
    steps = config.pair_steps if steps is None else int(steps)
    _check_requests(images, labels, requests, steps)
    if not requests:
        return []
    mentioned = max(max(max(r.source_classes), r.target) for r in requests)
    num_classes = int(num_classes or max(int(labels.max()) + 1, mentioned + 1))
    device, dtype = images.device, images.dtype
    sampler = ProblemSampler(
        labels,
        [r.source_classes for r in requests],
        [r.seed for r in requests],
        config.batch_size,
        pools=[r.pool for r in requests],
    )
    variables = _initial_variables(images, requests, config)
    targets = torch.as_tensor([r.target for r in requests], device=device)
    tracker = SourceLossTracker(steps, len(requests), num_classes, device, dtype)
    network = inversion_model(model)
    with model_in_eval_mode(network), torch.enable_grad():
        final_mask, final_pattern, success = _optimise(
            network, images, labels, sampler, variables, targets, config, steps, tracker
        )
    evaluation = _evaluate(network, images, labels, requests, sampler, final_mask, final_pattern)
    return _results(requests, final_mask, final_pattern, success, evaluation, tracker, steps)


def _initial_variables(
    images: torch.Tensor, requests: Sequence[InversionRequest], config: FlipConfig
) -> TriggerVariables:
    """One neutral mask and pattern per request, or the request's ``init_trigger`` when given."""
    variables = TriggerVariables.neutral(
        len(requests), image_shape(images), config.initial_mask_value, images.device, images.dtype
    )
    for k, request in enumerate(requests):
        if request.init_trigger is not None:
            variables.set_row(k, request.init_trigger)
    return variables


def _results(
    requests: Sequence[InversionRequest],
    final_mask: torch.Tensor,
    final_pattern: torch.Tensor,
    success: torch.Tensor,
    evaluation: list[tuple[float, float]],
    tracker: SourceLossTracker,
    steps: int,
) -> list[InversionResult]:
    """One :class:`InversionResult` per request from the final triggers and their statistics."""
    variances, sample_variances = tracker.variances()
    results = []
    for k, request in enumerate(requests):
        trigger = Trigger(
            mask=np.clip(final_mask[k].detach().cpu().double().numpy(), 0.0, 1.0),
            pattern=np.clip(final_pattern[k].detach().cpu().double().numpy(), 0.0, 1.0),
            name=f"nc[{','.join(map(str, request.source_classes))}->{request.target}]",
        )
        results.append(
            InversionResult(
                trigger=trigger,
                target=request.target,
                source_classes=request.source_classes,
                success=bool(success[k]),
                attack_acc=evaluation[k][0],
                final_loss=evaluation[k][1],
                mask_l1=float(final_mask[k].sum()),
                per_source_loss_variance=_finite(variances[k], request.source_classes),
                steps=steps,
                per_source_sample_variance=_finite(sample_variances[k], request.source_classes),
            )
        )
    return results


def _check_requests(
    images: torch.Tensor, labels: torch.Tensor, requests: Sequence[InversionRequest], steps: int
) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}.")
    if images.ndim != 4 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"images must be (N, C, H, W) and labels (N,); got {tuple(images.shape)}, "
            f"{tuple(labels.shape)}."
        )
    for request in requests:
        if request.target in request.source_classes or not request.source_classes:
            raise ValueError(
                f"a request needs >= 1 source class different from its target; got {request}."
            )


def _optimise(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    sampler: ProblemSampler,
    variables: TriggerVariables,
    targets: torch.Tensor,
    config: FlipConfig,
    steps: int,
    tracker: SourceLossTracker,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batched Neural-Cleanse loop: ``steps`` Adam steps on ``sum_k L_k``; returns the
    (smallest successful, else last) masks, patterns and the per-problem success flags."""
    count, device, dtype = len(sampler.members), images.device, images.dtype
    owner = sampler.owner.to(device)
    batch_counts = torch.as_tensor(sampler.batch_sizes, device=device, dtype=dtype)
    sample_targets = targets[owner]
    optimizer = torch.optim.Adam(
        variables.parameters(), lr=config.learning_rate, betas=config.betas
    )
    schedule = _CostSchedule(count, config, device, dtype)
    best_mask, best_pattern = (
        variables.masks().detach().clone(),
        variables.patterns().detach().clone(),
    )
    best_l1 = torch.full((count,), math.inf, device=device, dtype=dtype)
    for step in range(steps):
        indices = sampler.draw()
        masks, patterns = variables.masks(), variables.patterns()
        logits = _forward(model, variables.stamp(images[indices], owner, masks, patterns))
        ce = F.cross_entropy(logits, sample_targets, reduction="none")
        per_problem_ce = (
            torch.zeros(count, device=device, dtype=dtype).index_add_(0, owner, ce) / batch_counts
        )
        mask_l1 = masks.sum(dim=(1, 2))
        loss = (per_problem_ce + schedule.cost * mask_l1).sum()
        grads = torch.autograd.grad(loss, variables.parameters())
        with torch.no_grad():
            hits = (logits.argmax(dim=1) == sample_targets).to(dtype)
            attack_acc = (
                torch.zeros(count, device=device, dtype=dtype).index_add_(0, owner, hits)
                / batch_counts
            )
            tracker.add(step, owner, labels[indices], ce)
            improved = (attack_acc >= config.attack_success_threshold) & (mask_l1 < best_l1)
            best_l1 = torch.where(improved, mask_l1, best_l1)
            best_mask = torch.where(improved[:, None, None], masks, best_mask)
            best_pattern = torch.where(improved[:, None, None, None], patterns, best_pattern)
            schedule.update(attack_acc)
        for variable, grad in zip(variables.parameters(), grads, strict=True):
            variable.grad = grad
        optimizer.step()
    success = torch.isfinite(best_l1)
    with torch.no_grad():
        final_mask = torch.where(success[:, None, None], best_mask, variables.masks())
        final_pattern = torch.where(
            success[:, None, None, None], best_pattern, variables.patterns()
        )
    return final_mask, final_pattern, success


CPU_CHUNK = 128  # stamped images per forward pass on CPU (see _forward)


def _forward(model: torch.nn.Module, stamped: torch.Tensor) -> torch.Tensor:
    """``model(stamped)``; on CPU in chunks of :data:`CPU_CHUNK` images, so that a batched
    inversion over several clients (hundreds of images per step) keeps the activations of each
    convolution in cache as a single client's does (same values: samples are independent in eval
    mode)."""
    if stamped.device.type != "cpu" or stamped.shape[0] <= CPU_CHUNK:
        return model(stamped)
    return torch.cat([model(chunk) for chunk in stamped.split(CPU_CHUNK)])


def _finite(row: np.ndarray, sources: Sequence[int]) -> dict[int, float]:
    return {int(s): float(row[s]) for s in sources if math.isfinite(float(row[s]))}


class _CostSchedule:
    """Neural Cleanse's per-problem cost adjustment (module docstring), vectorised over K."""

    def __init__(
        self, count: int, config: FlipConfig, device: torch.device, dtype: torch.dtype
    ) -> None:
        self.cost = torch.full((count,), config.init_cost, device=device, dtype=dtype)
        self.up_counter = torch.zeros(count, device=device, dtype=torch.long)
        self.down_counter = torch.zeros(count, device=device, dtype=torch.long)
        self.threshold, self.patience = config.attack_success_threshold, config.patience
        self.multiplier_up, self.multiplier_down = (
            config.cost_multiplier,
            config.cost_multiplier**1.5,
        )

    def update(self, attack_acc: torch.Tensor) -> None:
        above = attack_acc >= self.threshold
        self.up_counter = torch.where(above, self.up_counter + 1, torch.zeros_like(self.up_counter))
        self.down_counter = torch.where(
            above, torch.zeros_like(self.down_counter), self.down_counter + 1
        )
        raise_cost = self.up_counter >= self.patience
        lower_cost = self.down_counter >= self.patience
        self.cost = torch.where(raise_cost, self.cost * self.multiplier_up, self.cost)
        self.cost = torch.where(lower_cost, self.cost / self.multiplier_down, self.cost)
        self.up_counter = torch.where(
            raise_cost, torch.zeros_like(self.up_counter), self.up_counter
        )
        self.down_counter = torch.where(
            lower_cost, torch.zeros_like(self.down_counter), self.down_counter
        )


def _per_source_variance(
    loss_sums: torch.Tensor, loss_counts: torch.Tensor, count: int, num_classes: int
) -> np.ndarray:
    """(K, num_classes): variance over steps of each (problem, source class)'s per-step mean CE.

    Steps whose mini-batch holds no sample of the class are skipped; NaN if fewer than 2 steps saw
    it."""
    sums = loss_sums.detach().double().cpu().numpy()
    counts = loss_counts.detach().double().cpu().numpy()
    seen = counts > 0
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=seen)
    num_seen = seen.sum(axis=0)
    mean_of_means = np.divide(
        (means * seen).sum(axis=0), num_seen, out=np.zeros(num_seen.shape), where=num_seen > 0
    )
    squared = ((means - mean_of_means) ** 2 * seen).sum(axis=0)
    variance = np.where(num_seen >= 2, squared / np.maximum(num_seen, 1), np.nan)
    return variance.reshape(count, num_classes)


def _evaluate(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    requests: Sequence[InversionRequest],
    sampler: ProblemSampler,
    masks: torch.Tensor,
    patterns: torch.Tensor,
) -> list[tuple[float, float]]:
    """(attack accuracy, mean CE toward the target) of each returned trigger on the problem's
    first ``_EVAL_SAMPLES`` source samples (all of them on a ~600-sample client's classes)."""
    out = []
    with model_in_eval_mode(model), torch.no_grad():
        for k, (request, members) in enumerate(zip(requests, sampler.members, strict=True)):
            batch = images[members[:_EVAL_SAMPLES].to(images.device)]
            logits = model(stamp(batch, masks[k], patterns[k]))
            target = torch.full(
                (batch.shape[0],), request.target, device=images.device, dtype=torch.long
            )
            out.append(
                (
                    float((logits.argmax(1) == target).float().mean()),
                    float(F.cross_entropy(logits, target)),
                )
            )
    return out


def _atanh_unit(values: torch.Tensor) -> torch.Tensor:
    """Inverse of ``(tanh(a) + 1) / 2`` with values clamped inside (0, 1)."""
    return torch.atanh((2 * values.detach().clone() - 1).clamp(-1 + _TANH_EPS, 1 - _TANH_EPS))
