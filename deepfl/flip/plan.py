"""What a FLIP client stamps in one local round: inversions, distances, pairs (paper section 3).

:class:`ClientRound` walks one benign client through Algorithm 1's inversion steps in two
stages, each ending in ONE batched inversion, so the stages of several clients can share one
optimisation (:mod:`.batched`):

1. universal stage: the cached warm-up (first selection: one universal trigger per target from
   the neutral mask, the distance matrix ``D`` from them) or, in ``fliplab``, the per-round
   universal re-inversion with Neural Cleanse's outlier test (``focus_*``);
2. pair stage: pairs chosen from ``D`` (:mod:`.selection`), their label-specific inversion, the
   update of ``D`` (:mod:`.distance`).

The result is a :class:`HardeningPlan`: the universal / focus directions (each its own hardening
slot) and the pairs (one slot each, one or two directions). ``inverter="abs"`` runs ABS in both
stages (App. A.7); the oracle inverters (App. A.12) and ``hardening=False`` (App. A.5: no
stamped sample is trained on, so no inversion is used) skip both.

The client's memory across rounds is a :class:`~.state.FlipClientState`, kept in the engine's
``state`` dict as ``flip_*`` keys (checkpointed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from deepfl.client import LocalData, RoundContext
from fldata.outliers import median_and_scaled_mad
from fldata.triggers import Trigger

from . import distance as distance_matrix
from .abs_inversion import invert_abs_many
from .config import FlipConfig
from .hardening import StampDirection
from .inversion import InversionRequest, InversionResult, invert_many
from .oracle import oracle_trigger, true_trigger_for
from .selection import HardeningPair, select_pairs
from .state import FlipClientState

__all__ = ["HardeningPlan", "ClientRound", "plan_hardening", "run_inversions", "draw_seed"]

logger = logging.getLogger("deepfl.flip")
Inverter = Callable[[list[InversionRequest], int], list[list[InversionResult]]]


@dataclass
class HardeningPlan:
    """The round's stamping directions: ``universal`` (warm-up universal triggers or the focus /
    suspect trigger, one slot each) and ``pairs`` (one slot per pair: forward, then reverse)."""

    universal: list[StampDirection] = field(default_factory=list)
    pairs: list[tuple[StampDirection, ...]] = field(default_factory=list)
    results: list[InversionResult] = field(default_factory=list)
    oracle: bool = False

    def directions(self) -> list[StampDirection]:
        return [*self.universal, *(d for pair in self.pairs for d in pair)]


def run_inversions(
    config: FlipConfig,
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    requests: list[InversionRequest],
    steps: int,
    num_classes: int,
) -> list[list[InversionResult]]:
    """All ``requests`` in ONE batched optimisation: Neural Cleanse (one result each) or ABS
    (``abs_num_candidates`` each, best first; App. A.7)."""
    if not requests:
        return []
    if config.inverter == "abs":
        return invert_abs_many(
            model, images, labels, requests, config=config, num_classes=num_classes
        )
    results = invert_many(
        model, images, labels, requests, config=config, steps=steps, num_classes=num_classes
    )
    return [[result] for result in results]


def plan_hardening(
    config: FlipConfig,
    model: torch.nn.Module,
    data: LocalData,
    state: dict,
    ctx: RoundContext,
    true_trigger: Trigger | None = None,
    batch_steps: int = 1,
) -> HardeningPlan:
    """One client's :class:`HardeningPlan` for this round (both stages, module docstring);
    ``batch_steps`` (the hardening's mini-batch steps) sizes ``pairs_per_round=None``."""
    client = ClientRound(config, data, state, ctx, true_trigger, batch_steps)

    def invert(requests: list[InversionRequest], steps: int) -> list[list[InversionResult]]:
        return run_inversions(
            config, model, data.images, data.labels, requests, steps, int(ctx.num_classes)
        )

    return client.run(invert)


class ClientRound:
    """One benign client's inversion stages in one round (module docstring).

    Call :meth:`universal_requests` / :meth:`take_universal`, then :meth:`pair_requests` /
    :meth:`take_pairs` (or :meth:`run` with an inverter), then read :attr:`plan`. Requests carry
    pool-relative rows; a caller that concatenates several clients' pools offsets them."""

    def __init__(
        self,
        config: FlipConfig,
        data: LocalData,
        state: dict,
        ctx: RoundContext,
        true_trigger: Trigger | None = None,
        batch_steps: int = 1,
    ) -> None:
        self.config, self.data, self.state, self.ctx = config, data, state, ctx
        self.flip = flip = FlipClientState.from_dict(state)
        self.num_classes = int(ctx.num_classes)
        channels, height, width = (int(s) for s in data.images.shape[1:])
        self.image_shape = (channels, height, width)
        self.batch_steps = int(batch_steps)
        self.plan = HardeningPlan()
        flip.times_selected = (flip.times_selected or 0) + 1
        if config.is_oracle:
            trigger = oracle_trigger(
                config, self.image_shape, ctx.round, ctx.client_id, true_trigger
            )
            flip.last_stats = {"oracle": 1.0}
            flip.save_to(state)
            self.plan = HardeningPlan(universal=[StampDirection(None, (trigger,))], oracle=True)
            self.stage = "done"
            return
        self.seed = draw_seed(ctx.generator)
        if not config.hardening:
            # App. A.5: nothing is trained on stamped data, so no inversion would be used; the
            # seed is still drawn, so the round generator's stream does not depend on the flag
            flip.last_stats = {"hardening": 0.0}
            flip.save_to(state)
            self.stage = "done"
            return
        self.counts = np.bincount(data.labels.detach().cpu().numpy(), minlength=self.num_classes)[
            : self.num_classes
        ]
        leak = (
            true_trigger_for(config, self.image_shape, true_trigger)
            if config.leak_true_trigger_box
            else None
        )
        if config.leak_true_trigger_box and leak is None:
            raise ValueError(
                "leak_true_trigger_box=True needs the true trigger: set true_trigger_dba_scale or "
                "pass true_trigger= to FlipDefense."
            )
        self.leak_init = _box_initialisation(leak, config) if leak is not None else None
        selections = flip.times_selected
        rewarm = config.rewarm_every > 0 and (selections - 1) % config.rewarm_every == 0
        self.warming_up = flip.distance is None or rewarm
        self.refreshing = not self.warming_up and config.focus_smallest_universal > 0
        self.pairs: list[HardeningPair] = []
        self.stage = "universal"
        flip.save_to(state)

    # ---------------------------------------------------------------------------- stage 1
    def universal_steps(self) -> int:
        return self.config.warmup_steps if self.warming_up else self.config.focus_refresh_steps

    def universal_requests(self) -> list[InversionRequest]:
        """One request per target (sources: the present non-target classes), or none."""
        if self.stage != "universal" or not (self.warming_up or self.refreshing):
            return []
        present = np.flatnonzero(self.counts > 0)
        return [
            InversionRequest(
                tuple(int(s) for s in present if s != t),
                int(t),
                seed=self.seed + 1000 + int(t),
                init_trigger=self._universal_init(int(t)),
            )
            for t in range(self.num_classes)
            if np.any(present != t)
        ]

    def take_universal(self, candidates: list[list[InversionResult]]) -> None:
        """Cache the universal triggers; warm-up: distances; refresh: Neural Cleanse's focus."""
        config, flip = self.config, self.flip
        universal = [group[0] for group in candidates]
        self.stage = "pairs"
        if universal or self.warming_up:
            _cache_universal(flip, universal, self.num_classes, self.image_shape)
        if self.warming_up:
            assert flip.universal_masks is not None and flip.universal_patterns is not None
            flip.distance = distance_matrix.warmup_distance_matrix(
                universal, self.num_classes, config.distance
            )
            flip.mask_size = distance_matrix.mask_size_matrix(universal, self.num_classes)
            flip.warmup_round = int(self.ctx.round)
            flip.warmup_masks = flip.universal_masks.astype(np.float32)
            flip.warmup_patterns = flip.universal_patterns.astype(np.float32)
            if config.harden_with_universal:
                self.plan.universal += [_direction(r) for r in universal]
        elif self.refreshing:
            flip.refresh_round = int(self.ctx.round)
        self._focus(universal)
        flip.save_to(self.state)

    def _focus(self, universal: list[InversionResult]) -> None:
        """``fliplab``'s outlier test on the universal triggers and the remembered suspect."""
        config, flip = self.config, self.flip
        focus = _anomalous(
            _smallest_mask_targets(universal, config.focus_smallest_universal), universal, config
        )
        flip.focus_targets = np.array([r.target for r in focus], dtype=np.int64)
        if focus and config.focus_memory:
            best = focus[0]
            flip.suspect_target = int(best.target)
            flip.suspect_sources = np.array(best.source_classes)
            flip.suspect_mask, flip.suspect_pattern = best.trigger.mask, best.trigger.pattern
        if not (self.warming_up and config.harden_with_universal):
            if focus:
                self.plan.universal += [_direction(r) for r in focus]
            elif config.focus_memory and flip.suspect_target is not None:
                target = flip.suspect_target
                assert flip.suspect_mask is not None and flip.suspect_pattern is not None
                name = f"suspect->{target}"
                suspect = Trigger(flip.suspect_mask, flip.suspect_pattern, name=name)
                sources = tuple(int(c) for c in np.asarray(flip.suspect_sources))
                self.plan.universal.append(StampDirection(sources, (suspect,), target))
        if universal and config.focus_smallest_universal > 0:
            logger.info(
                "FLIP client %s round %s: anomalous focus %s (universal |m|_1 %s), remembered "
                "suspect %s",
                self.ctx.client_id,
                self.ctx.round,
                [r.target for r in focus],
                [round(r.mask_l1, 1) for r in focus],
                flip.suspect_target,
            )
        self.focus_stats = (
            {"focus_target": float(focus[0].target), "focus_mask_l1": focus[0].mask_l1}
            if focus
            else {}
        )

    # ---------------------------------------------------------------------------- stage 2
    def pair_requests(self) -> list[InversionRequest]:
        """Select this round's pairs from ``D`` and return their directions' inversion requests."""
        if self.stage != "pairs":
            return []
        config, flip = self.config, self.flip
        assert flip.distance is not None, "the universal stage sets the distance matrix"
        rng = np.random.default_rng(self.seed)
        self.pairs = select_pairs(
            flip.distance,
            self.counts,
            num_pairs=self.num_pairs(),
            min_samples=config.min_samples_per_label,
            priority=config.pair_priority,
            exploration_prob=config.exploration_prob,
            rng=rng,
            only_target=config.oracle_pair_target,
        )
        flip.last_pairs = np.array(
            [[p.source, p.target, int(p.symmetric)] for p in self.pairs], dtype=np.int64
        ).reshape(-1, 3)
        flip.save_to(self.state)
        directions = [d for pair in self.pairs for d in pair.directions()]
        return [
            InversionRequest((s,), t, seed=self.seed + 1 + i, init_trigger=self._pair_init(t))
            for i, (s, t) in enumerate(directions)
        ]

    def num_pairs(self) -> int:
        """``pairs_per_round``, or (None) one per hardening slot left after the universal ones."""
        config = self.config
        if config.pairs_per_round is not None:
            return config.pairs_per_round
        hold = config.pair_hold_batches if config.pair_schedule == "rotate" else 1
        left = self.batch_steps - (
            len(self.plan.universal) if config.pair_schedule == "rotate" else 0
        )
        return max(1, -(-left // hold))

    def take_pairs(self, candidates: list[list[InversionResult]]) -> None:
        """Pair slots from the inversions (all ABS candidates stamped), ``D`` updated."""
        config, flip = self.config, self.flip
        self.stage = "done"
        if not self.pairs:
            flip.last_stats = {"num_directions": 0.0, **self.focus_stats}
            flip.save_to(self.state)
            return
        results = [group[0] for group in candidates]
        groups = iter(candidates)
        for pair in self.pairs:
            self.plan.pairs.append(
                tuple(
                    StampDirection((s,), tuple(c.trigger for c in next(groups)), t)
                    for s, t in pair.directions()
                )
            )
        assert flip.distance is not None, "the universal stage sets the distance matrix"
        flip.distance = distance_matrix.update_distance_matrix(
            flip.distance, results, config.distance, config.distance_momentum, flip.mask_size
        )
        previous_sizes = flip.mask_size
        if previous_sizes is None:
            previous_sizes = np.full_like(flip.distance, np.nan)
        flip.mask_size = distance_matrix.update_mask_sizes(previous_sizes, results)
        _cache_pairs(flip, results)
        flip.pair_round = int(self.ctx.round)
        self.plan.results = results
        flip.last_stats = {**_summary(results, self.pairs), **self.focus_stats}
        flip.save_to(self.state)

    def run(self, invert: Inverter) -> HardeningPlan:
        """Both stages with ``invert(requests, steps) -> candidates per request``."""
        if self.stage == "universal":
            self.take_universal(invert(self.universal_requests(), self.universal_steps()))
            self.take_pairs(invert(self.pair_requests(), self.config.pair_steps))
        return self.plan

    # ---------------------------------------------------------------------------- initial triggers
    def _universal_init(self, target: int) -> Trigger | None:
        if self.refreshing and self.config.focus_refresh_init == "cached":
            return _cached_trigger(self.flip, target)
        return self.leak_init

    def _pair_init(self, target: int) -> Trigger | None:
        if self.config.warm_start_from_universal:
            return _cached_trigger(self.flip, target) or self.leak_init
        return self.leak_init


def _direction(result: InversionResult) -> StampDirection:
    return StampDirection(tuple(result.source_classes), (result.trigger,), int(result.target))


def _cache_universal(
    flip: FlipClientState,
    results: list[InversionResult],
    num_classes: int,
    image_shape: tuple[int, ...],
) -> None:
    """Cache the universal masks / patterns (NaN for targets without a problem)."""
    channels, height, width = image_shape
    masks = np.full((num_classes, height, width), np.nan)
    patterns = np.full((num_classes, channels, height, width), np.nan)
    for result in results:
        masks[result.target], patterns[result.target] = result.trigger.mask, result.trigger.pattern
    flip.universal_masks, flip.universal_patterns = masks, patterns
    flip.universal_attack_acc = np.array([r.attack_acc for r in results])
    flip.universal_success = np.array([r.success for r in results], dtype=bool)


def _cache_pairs(flip: FlipClientState, results: list[InversionResult]) -> None:
    """The last label-specific triggers (float32), for Figure 2c
    (:meth:`FlipDefense.export_triggers`).
    """
    flip.pair_masks = np.stack([r.trigger.mask for r in results]).astype(np.float32)
    flip.pair_patterns = np.stack([r.trigger.pattern for r in results]).astype(np.float32)
    flip.pair_directions = np.array(
        [[r.source_classes[0], r.target] for r in results], dtype=np.int64
    )


def _smallest_mask_targets(results: list[InversionResult], count: int) -> list[InversionResult]:
    """The ``count`` universal inversions with the smallest masks, successful ones first (Neural
    Cleanse: the backdoor target needs an anomalously small trigger)."""
    ranked = sorted(results, key=lambda r: (not r.success, r.mask_l1, r.target))
    return ranked[:count]


def _anomalous(
    candidates: list[InversionResult], universal: list[InversionResult], config: FlipConfig
) -> list[InversionResult]:
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
        return l1 < median and (
            spread == 0.0 or (median - l1) / spread > config.focus_anomaly_index
        )

    test = config.focus_anomaly_test
    return [
        r
        for r in candidates
        if r.success
        and ((test != "mad" and by_ratio(r.mask_l1)) or (test != "ratio" and by_index(r.mask_l1)))
    ]


def _cached_trigger(flip: FlipClientState, target: int) -> Trigger | None:
    """The cached universal trigger of ``target`` (None if not cached or NaN)."""
    if flip.universal_masks is None or flip.universal_patterns is None:
        return None
    mask, pattern = flip.universal_masks[target], flip.universal_patterns[target]
    if not (np.all(np.isfinite(mask)) and np.all(np.isfinite(pattern))):
        return None
    return Trigger(mask, pattern, name=f"universal->{target}")


def _box_initialisation(true_trigger: Trigger, config: FlipConfig) -> Trigger:
    """``leak_true_trigger_box``: mask 1 over the bounding box of the TRUE trigger's pixels (the
    released CIFAR code's rows 0-4 x cols 0-13), ``initial_mask_value`` elsewhere; pattern 0.5."""
    rows, cols = np.nonzero(np.asarray(true_trigger.mask) > 0)
    mask = np.full(np.asarray(true_trigger.mask).shape, config.initial_mask_value)
    mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = 1.0
    return Trigger(
        mask, np.full(np.asarray(true_trigger.pattern).shape, 0.5), name="leak_true_trigger_box"
    )


def _summary(
    results: Sequence[InversionResult], pairs: Sequence[HardeningPair]
) -> dict[str, float]:
    return {
        "num_pairs": float(len(pairs)),
        "num_symmetric": float(sum(p.symmetric for p in pairs)),
        "num_directions": float(len(results)),
        "mean_attack_acc": float(np.mean([r.attack_acc for r in results])),
        "mean_mask_l1": float(np.mean([r.mask_l1 for r in results])),
        "success_rate": float(np.mean([r.success for r in results])),
    }


def draw_seed(generator: torch.Generator | None) -> int:
    """A 31-bit seed from the round's generator (0 when the engine gives none)."""
    if generator is None:
        return 0
    return int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device).item())
