"""FLIP on a benign client (paper section 3, Algorithms 1-2): the engine's ``ClientDefense``.

Per local round, on the received global model:

1. cached warm-up, the first time the client is selected: one universal trigger per target
   class (all targets in ONE batched inversion, :func:`.inversion.invert_many`) and the class
   distance matrix ``D`` (:mod:`.distance`), both kept in the client's own ``state`` dict; in
   that round the universal triggers are also stamped (``harden_with_universal``);
   every LATER round (default ``focus_smallest_universal=1``, a deviation from the paper, see
   :mod:`.config`) the universal triggers are re-inverted from the neutral mask and the one with
   the smallest mask is stamped too if it is an outlier (Neural Cleanse's backdoor signature);
2. pair selection from ``D`` with (a)symmetric hardening by local label availability
   (:mod:`.selection`);
3. label-specific inversion of all selected directions in ONE batched optimisation, each
   started from the cached universal trigger of its target (``warm_start_from_universal``) (or the
   ABS-style inverter, App. A.7; or an ORACLE trigger, App. A.12), then ``D`` is updated;
4. hardening: the engine's trainer runs the local epochs with an ``augment`` that adds samples
   stamped with the inverted triggers under their TRUE labels (:mod:`.hardening`);
   ``hardening=False`` (App. A.5) trains plainly after the inversion.

``state`` keys (numpy / plain values only): ``flip_distance`` (C, C), ``flip_universal_masks``
(C, H, W), ``flip_universal_patterns`` (C, C_in, H, W), ``flip_warmup_round``,
``flip_times_selected``, ``flip_focus_targets`` ((k,) int), ``flip_last_pairs`` ((P, 3) int: source, target, symmetric),
``flip_last_stats`` (dict of floats).
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from fldata.outliers import median_and_scaled_mad
from fldata.triggers import Trigger

from . import distance as distance_matrix
from .abs_inversion import invert_abs_many
from .config import FlipConfig
from .hardening import StampDirection, append_augment, replace_augment, stamped_pool
from .inversion import InversionRequest, InversionResult, invert_many
from .oracle import oracle_trigger, true_trigger_for
from .selection import HardeningPair, select_pairs

__all__ = ["FlipDefense", "hardening_directions", "make_hardening_augment"]

logger = logging.getLogger("deepfl.flip")


class FlipDefense:
    """FLIP's benign-client behaviour: ``FlipDefense(**client_params).train(model, data, state, trainer, ctx)``.

    Args:
        true_trigger: the attack's true trigger, ONLY for the oracle ground-truth baseline or the
            ``init_at_true_location_LEAK`` option; never used otherwise.
        **params: :class:`FlipConfig` fields (unknown keys raise ValueError listing allowed ones).
    """

    # the params are FlipConfig's fields (checked before construction by deepfl.components)
    parameter_constraints = FlipConfig.parameter_constraints
    check_consistency = FlipConfig.check_consistency
    true_trigger_need = FlipConfig.true_trigger_need

    def __init__(self, true_trigger: Trigger | None = None, **params: Any) -> None:
        self.config = FlipConfig.from_dict(params)
        self.true_trigger = true_trigger
        self.last_results: list[InversionResult] = []

    def train(self, model: torch.nn.Module, data: Any, state: dict, trainer: Any, ctx: Any) -> None:
        """Invert, select, harden (module docstring); updates ``model`` in place and ``state``."""
        started = time.perf_counter()
        directions, results = hardening_directions(self.config, model, data, state, ctx, self.true_trigger)
        self.last_results = results
        inversion_seconds = time.perf_counter() - started
        stats = dict(state.get("flip_last_stats", {}))
        stats["inversion_seconds"] = inversion_seconds
        directions = _small_triggers_only(directions, self.config.max_mask_fraction)
        stats["num_stamped_directions"] = float(len(directions))
        if self.config.hardening and directions:
            augment = make_hardening_augment(self.config, data, directions, ctx)
            trainer.train(model, data, augment=augment, generator=ctx.generator, **_trainer_options(self.config))
        else:
            trainer.train(model, data, generator=ctx.generator)
        stats["round_seconds"] = time.perf_counter() - started
        state["flip_last_stats"] = stats


def hardening_directions(config: FlipConfig, model: torch.nn.Module, data: Any, state: dict, ctx: Any,
                         true_trigger: Trigger | None = None) -> tuple[list[StampDirection], list[InversionResult]]:
    """Steps 1-3 of the module docstring: the stamping directions of this round (and the inversions)."""
    images, labels = data.images, data.labels
    image_shape = tuple(int(s) for s in images.shape[1:])
    num_classes = int(ctx.num_classes)
    state["flip_times_selected"] = int(state.get("flip_times_selected", 0)) + 1
    if config.is_oracle:
        trigger = oracle_trigger(config, image_shape, ctx.round, ctx.client_id, true_trigger)
        state["flip_last_stats"] = {"oracle": 1.0}
        return [StampDirection(None, (trigger,))], []

    seed = _draw_seed(ctx.generator)
    counts = np.bincount(labels.detach().cpu().numpy(), minlength=num_classes)[:num_classes]
    leak = true_trigger_for(config, image_shape, true_trigger) if config.init_at_true_location_LEAK else None
    leak_init = _leak_initialisation(leak, config) if leak is not None else None
    directions: list[StampDirection] = []
    selections = state["flip_times_selected"]
    rewarm = config.rewarm_every > 0 and (selections - 1) % config.rewarm_every == 0
    warming_up = "flip_distance" not in state or rewarm
    universal: list[InversionResult] = []
    if warming_up:
        universal = _warm_up(config, model, images, labels, counts, state, ctx, seed, leak_init)
        if config.harden_with_universal:
            directions += [StampDirection(tuple(r.source_classes), (r.trigger,)) for r in universal]
    elif config.focus_smallest_universal > 0:
        universal = _refresh_universal(config, model, images, labels, counts, state, ctx, seed)
    focus = _anomalous(_smallest_mask_targets(universal, config.focus_smallest_universal), universal, config)
    state["flip_focus_targets"] = np.array([r.target for r in focus], dtype=np.int64)
    if focus and config.focus_memory:
        best = focus[0]
        state["flip_suspect_target"], state["flip_suspect_sources"] = int(best.target), np.array(best.source_classes)
        state["flip_suspect_mask"], state["flip_suspect_pattern"] = best.trigger.mask, best.trigger.pattern
    if not (warming_up and config.harden_with_universal):
        if focus:
            directions += [StampDirection(tuple(r.source_classes), (r.trigger,)) for r in focus]
        elif config.focus_memory and "flip_suspect_target" in state:
            suspect = Trigger(state["flip_suspect_mask"], state["flip_suspect_pattern"],
                              name=f"suspect->{state['flip_suspect_target']}")
            directions.append(StampDirection(tuple(int(c) for c in state["flip_suspect_sources"]), (suspect,)))
    if universal and config.focus_smallest_universal > 0:
        logger.info("FLIP client %s round %s: anomalous focus %s (universal |m|_1 %s), remembered suspect %s",
                    ctx.client_id, ctx.round, [r.target for r in focus], [round(r.mask_l1, 1) for r in focus],
                    state.get("flip_suspect_target"))
    focus_stats = {"focus_target": float(focus[0].target), "focus_mask_l1": focus[0].mask_l1} if focus else {}
    rng = np.random.default_rng(seed)
    pairs = select_pairs(state["flip_distance"], counts, num_pairs=config.pairs_per_round,
                         min_samples=config.min_samples_per_label, priority=config.pair_priority,
                         exploration_prob=config.exploration_prob, rng=rng)
    state["flip_last_pairs"] = np.array([[p.source, p.target, int(p.symmetric)] for p in pairs],
                                        dtype=np.int64).reshape(-1, 3)
    if not pairs:
        state["flip_last_stats"] = {"num_directions": 0.0, **focus_stats}
        return directions, []
    requests = [InversionRequest((s,), t, seed=seed + 1 + i, init_trigger=leak_init or _cached_universal(config, state, t))
                for i, (s, t) in enumerate(d for pair in pairs for d in pair.directions())]
    if config.inverter == "abs":
        candidates = invert_abs_many(model, images, labels, requests, config=config, num_classes=num_classes)
        results = [c[0] for c in candidates]
        directions += [StampDirection(r.source_classes, tuple(c.trigger for c in cands))
                       for r, cands in zip(requests, candidates)]
    else:
        results = invert_many(model, images, labels, requests, config=config, steps=config.pair_steps,
                              num_classes=num_classes)
        directions += [StampDirection(r.source_classes, (r.trigger,)) for r in results]
    state["flip_distance"] = distance_matrix.update_distance_matrix(
        state["flip_distance"], results, config.distance, config.distance_momentum)
    state["flip_last_stats"] = {**_summary(results, pairs), **focus_stats}
    return directions, results


def make_hardening_augment(config: FlipConfig, data: Any, directions: list[StampDirection], ctx: Any):
    """The ``augment(x, y)`` of paper-style (append) or released-style (replace) hardening."""
    generator = torch.Generator().manual_seed(_draw_seed(ctx.generator))
    if config.augment_mode == "replace":
        return replace_augment(directions, int(ctx.num_classes), config.replace_portion, generator)
    pool_x, pool_y = stamped_pool(data.images, data.labels, directions)
    return append_augment(pool_x, pool_y, config.num_augmented, generator)


def _invert_universal(config: FlipConfig, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      counts: np.ndarray, num_classes: int, seed: int, steps: int,
                      init: Any) -> list[InversionResult]:
    """One universal trigger per target (sources: all present non-target classes), ONE batched
    inversion; ``init(t)`` gives target ``t``'s starting trigger (None = neutral)."""
    present = np.flatnonzero(counts > 0)
    requests = [InversionRequest(tuple(int(s) for s in present if s != t), int(t), seed=seed + 1000 + int(t),
                                 init_trigger=init(t))
                for t in range(num_classes) if np.any(present != t)]
    return invert_many(model, images, labels, requests, config=config, steps=steps,
                       num_classes=num_classes) if requests else []


def _cache_universal(state: dict, results: list[InversionResult], num_classes: int,
                     image_shape: tuple[int, ...]) -> None:
    """Store the universal masks / patterns (NaN for targets without a problem) in ``state``."""
    channels, height, width = image_shape
    masks = np.full((num_classes, height, width), np.nan)
    patterns = np.full((num_classes, channels, height, width), np.nan)
    for result in results:
        masks[result.target], patterns[result.target] = result.trigger.mask, result.trigger.pattern
    state["flip_universal_masks"], state["flip_universal_patterns"] = masks, patterns
    state["flip_universal_attack_acc"] = np.array([r.attack_acc for r in results])


def _refresh_universal(config: FlipConfig, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                       counts: np.ndarray, state: dict, ctx: Any, seed: int) -> list[InversionResult]:
    """Per-round universal re-inversion (``focus_smallest_universal`` > 0): ``focus_refresh_steps``
    steps from the neutral mask (``focus_refresh_init="neutral"``) or warm-started from the cached
    universal triggers; updates the cache, not the distance matrix."""
    num_classes = int(ctx.num_classes)

    def init(target: int) -> Trigger | None:
        return _cached_trigger(state, target) if config.focus_refresh_init == "cached" else None

    results = _invert_universal(config, model, images, labels, counts, num_classes, seed,
                                config.focus_refresh_steps, init)
    _cache_universal(state, results, num_classes, tuple(int(s) for s in images.shape[1:]))
    return results


def _smallest_mask_targets(results: list[InversionResult], count: int) -> list[InversionResult]:
    """The ``count`` universal inversions with the smallest masks, successful ones first (Neural
    Cleanse: the backdoor target needs an anomalously small trigger)."""
    ranked = sorted(results, key=lambda r: (not r.success, r.mask_l1, r.target))
    return ranked[:count]


def _anomalous(candidates: list[InversionResult], universal: list[InversionResult],
               config: FlipConfig) -> list[InversionResult]:
    """The successful candidates whose mask L1 is a small-side outlier among the client's successful
    universal triggers: Neural Cleanse's anomaly index ``(median - L1) / (1.4826 * MAD)`` above
    ``focus_anomaly_index`` (``focus_anomaly_test="mad"``; MAD = 0 counts any L1 below the median),
    ``L1 < focus_anomaly_ratio * median`` (``"ratio"``), or either of the two (``"either"``)."""
    sizes = np.array([r.mask_l1 for r in universal if r.success])
    if sizes.size == 0:
        return []
    median, spread = median_and_scaled_mad(sizes)

    def by_ratio(l1: float) -> bool:
        return l1 < config.focus_anomaly_ratio * median

    def by_index(l1: float) -> bool:
        return l1 < median and (spread == 0.0 or (median - l1) / spread > config.focus_anomaly_index)

    test = config.focus_anomaly_test
    return [r for r in candidates if r.success and ((test != "mad" and by_ratio(r.mask_l1))
                                                    or (test != "ratio" and by_index(r.mask_l1)))]


def _warm_up(config: FlipConfig, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
             counts: np.ndarray, state: dict, ctx: Any, seed: int,
             leak_init: Trigger | None) -> list[InversionResult]:
    """Universal trigger per target (all batched) -> cached triggers and distance matrix."""
    num_classes = int(ctx.num_classes)
    results = _invert_universal(config, model, images, labels, counts, num_classes, seed,
                                config.warmup_steps, lambda t: leak_init)
    _cache_universal(state, results, num_classes, tuple(int(s) for s in images.shape[1:]))
    state["flip_distance"] = distance_matrix.warmup_distance_matrix(results, num_classes, config.distance)
    state["flip_warmup_round"] = int(ctx.round)
    logger.debug("client %s warm-up: %d universal triggers, attack acc %s", ctx.client_id, len(results),
                 np.round(state["flip_universal_attack_acc"], 3))
    return results


def _cached_universal(config: FlipConfig, state: dict, target: int) -> Trigger | None:
    """The cached universal trigger of ``target`` as a starting point (``warm_start_from_universal``)."""
    return _cached_trigger(state, target) if config.warm_start_from_universal else None


def _cached_trigger(state: dict, target: int) -> Trigger | None:
    """The cached universal trigger of ``target`` (None if not cached or NaN)."""
    if "flip_universal_masks" not in state:
        return None
    mask, pattern = state["flip_universal_masks"][target], state["flip_universal_patterns"][target]
    if not (np.all(np.isfinite(mask)) and np.all(np.isfinite(pattern))):
        return None
    return Trigger(mask, pattern, name=f"universal->{target}")


def _small_triggers_only(directions: list[StampDirection], max_fraction: float) -> list[StampDirection]:
    """Drop triggers whose mask covers more than ``max_fraction`` of the image (released code: 1/8)."""
    kept = []
    for direction in directions:
        triggers = tuple(t for t in direction.triggers if t.mask.sum() <= max_fraction * t.mask.size)
        if triggers:
            kept.append(StampDirection(direction.sources, triggers))
    return kept


def _leak_initialisation(true_trigger: Trigger, config: FlipConfig) -> Trigger:
    """LEAK option: mask starts at 0.99 on the TRUE trigger's pixels (released CIFAR code)."""
    mask = np.maximum(config.initial_mask_value, 0.99 * (true_trigger.mask > 0))
    return Trigger(mask, np.full(true_trigger.pattern.shape, 0.5), name="init_at_true_location_LEAK")


def _summary(results: list[InversionResult], pairs: list[HardeningPair]) -> dict[str, float]:
    return {
        "num_pairs": float(len(pairs)),
        "num_symmetric": float(sum(p.symmetric for p in pairs)),
        "num_directions": float(len(results)),
        "mean_attack_acc": float(np.mean([r.attack_acc for r in results])),
        "mean_mask_l1": float(np.mean([r.mask_l1 for r in results])),
        "success_rate": float(np.mean([r.success for r in results])),
    }


def _trainer_options(config: FlipConfig) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if config.hardening_optimizer != "sgd":
        options["optimizer"] = config.hardening_optimizer
    if config.hardening_max_steps is not None:
        options["max_steps"] = config.hardening_max_steps
    return options


def _draw_seed(generator: torch.Generator | None) -> int:
    """A 31-bit seed from the round's generator (0 when the engine gives none)."""
    if generator is None:
        return 0
    return int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device).item())
