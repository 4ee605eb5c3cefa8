"""FLIP config, pair selection, hardening augments, FlipDefense / AdaptiveAttacker plumbing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from flip_fixtures import (  # noqa: F401  (backdoored_setup, make_clean_model: fixtures)
    BackdooredSetup,
    backdoored_setup,
    clone,
    make_clean_model,
    target_probability_on_triggered,
)

from deepfl.client import LocalData, LocalTrainer, RoundContext
from deepfl.config import TrainConfig
from deepfl.flip import (
    AdaptiveAttacker,
    FlipConfig,
    FlipDefense,
    InversionRequest,
    invert_many,
    select_pairs,
)
from deepfl.flip import plan as plan_module
from deepfl.flip.defense import cap_plan, hardening_directions
from deepfl.flip.hardening import StampDirection, append_augment, replace_augment, stamped_pool
from deepfl.flip.inversion import InversionResult
from deepfl.flip.oracle import oracle_trigger
from deepfl.flip.plan import HardeningPlan, _anomalous, _smallest_mask_targets
from deepfl.flip.state import FlipClientState
from fldata.triggers import dba_trigger

TRAINER = LocalTrainer(
    TrainConfig(lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=64, epochs=1)
)


def context(round_index: int = 1, client_id: int = 3, seed: int = 0) -> RoundContext:
    return RoundContext(
        round=round_index,
        client_id=client_id,
        num_classes=10,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(seed),
    )


# --- config ------------------------------------------------------------------------------------


def test_config_rejects_unknown_keys_listing_allowed():
    with pytest.raises(
        ValueError,
        match=r"unknown key 'warmup_step' \(did you mean 'warmup_steps'\?\).*allowed "
        r"keys:.*warmup_steps",
    ):
        FlipConfig.from_dict({"warmup_step": 3})


@pytest.mark.parametrize(
    "bad",
    [
        {"inverter": "nc"},
        {"distance": "l2"},
        {"pairs_per_round": 0},
        {"exploration_prob": 1.5},
        {"initial_mask_value": 0.0},
        {"betas": (0.5, 1.0)},
        {"cost_multiplier": 1.0},
        {"warmup_steps": 2.5},
        {"hardening_optimizer": "rmsprop"},
        {"pairs_per_round": 0},
        {"symmetric_rule": "pair"},
        {"pair_schedule": "random"},
        {"hardening_betas": (0.5, 1.0)},
        {"hardening_lr": 0.0},
        {"distance": "l1"},
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        FlipConfig.from_dict(bad)


def test_config_round_trip_and_defaults():
    config = FlipConfig.from_dict({"exploration_prob": 0.3, "betas": [0.4, 0.8]})
    assert FlipConfig.from_dict(config.to_dict()) == config
    paper = FlipConfig()
    assert (paper.init_cost, paper.learning_rate, paper.betas, paper.patience) == (
        1e-3,
        0.1,
        (0.5, 0.9),
        10,
    )
    assert (
        paper.min_samples_per_label == 5
        and paper.num_augmented == 64
        and paper.rejection_tau == 0.3
    )
    assert not paper.leak_true_trigger_box
    with pytest.raises(ValueError, match="allowed keys"):
        FlipDefense(bogus=1)


# --- pair selection ----------------------------------------------------------------------------


def test_symmetric_when_both_labels_available_else_asymmetric():
    distance = np.full((4, 4), np.nan)
    distance[0, 1], distance[2, 3], distance[1, 2] = 9.0, 8.0, 1.0
    counts = np.array([10, 20, 30, 3])  # class 3 has too few samples (<= 5)
    pairs = select_pairs(distance, counts, num_pairs=3, min_samples=5)
    assert [(p.source, p.target, p.symmetric) for p in pairs] == [
        (0, 1, True),
        (2, 3, False),
        (1, 2, True),
    ]
    assert pairs[0].directions() == [(0, 1), (1, 0)] and pairs[1].directions() == [(2, 3)]


def test_selection_skips_unavailable_sources_and_duplicate_pairs():
    distance = np.full((3, 3), np.nan)
    distance[2, 0], distance[1, 0], distance[0, 1] = 9.0, 5.0, 4.0
    counts = np.array([10, 10, 0])
    pairs = select_pairs(distance, counts, num_pairs=5, min_samples=5)
    assert [(p.source, p.target) for p in pairs] == [(1, 0)]  # (2,0): no source; (0,1): same pair
    smallest = select_pairs(distance, counts, num_pairs=1, min_samples=5, priority="smallest")
    assert (smallest[0].source, smallest[0].target) == (0, 1)


def test_exploration_is_seeded_and_random():
    distance = np.arange(100, dtype=float).reshape(10, 10)
    np.fill_diagonal(distance, np.nan)
    counts = np.full(10, 50)

    def pick(seed: int) -> list[tuple[int, int]]:
        rng = np.random.default_rng(seed)
        pairs = select_pairs(
            distance, counts, num_pairs=3, min_samples=5, exploration_prob=1.0, rng=rng
        )
        return [(p.source, p.target) for p in pairs]

    assert pick(1) == pick(1)
    assert len({tuple(pick(seed)) for seed in range(5)}) > 1
    with pytest.raises(ValueError, match="rng"):
        select_pairs(distance, counts, num_pairs=1, min_samples=5, exploration_prob=0.3)


def test_only_target_keeps_the_backdoor_pairs_ranked_by_distance():
    distance = np.arange(16, dtype=float).reshape(4, 4)
    np.fill_diagonal(distance, np.nan)
    counts = np.array([10, 10, 3, 10])  # class 2 is no source (<= 5 samples)
    everything = select_pairs(distance, counts, num_pairs=1, min_samples=5)
    assert (everything[0].source, everything[0].target) == (3, 2)  # the largest distance
    pairs = select_pairs(distance, counts, num_pairs=5, min_samples=5, only_target=1)
    # sources 3 (D=13) then 0 (D=1) into class 1; class 2 has too few samples to be a source
    assert [(p.source, p.target, p.symmetric) for p in pairs] == [(3, 1, True), (0, 1, True)]
    explored = select_pairs(
        distance,
        counts,
        num_pairs=2,
        min_samples=5,
        exploration_prob=1.0,
        rng=np.random.default_rng(0),
        only_target=1,
    )
    assert {p.target for p in explored} == {1}
    with pytest.raises(ValueError, match="only_target"):
        select_pairs(distance, counts, num_pairs=1, min_samples=5, only_target=4)


# --- hardening augments ------------------------------------------------------------------------


def test_append_augment_keeps_true_labels():
    images = torch.rand(30, 1, 28, 28)
    labels = torch.arange(30) % 3
    trigger = dba_trigger((1, 28, 28))
    pool_x, pool_y = stamped_pool(images, labels, [StampDirection((1,), (trigger,))])
    assert torch.equal(pool_y, labels[labels == 1])
    assert torch.all(pool_x[:, :, 0, :4] == 1.0)
    augment = append_augment(pool_x, pool_y, 64, torch.Generator().manual_seed(0))
    x, y = augment(images[:8], labels[:8])
    assert x.shape == (72, 1, 28, 28) and torch.all(y[8:] == 1) and torch.equal(y[:8], labels[:8])


def test_replace_augment_stamps_only_source_samples_in_place():
    images = torch.rand(40, 1, 28, 28) * 0.5
    labels = torch.arange(40) % 4
    trigger = dba_trigger((1, 28, 28))
    augment = replace_augment(
        [StampDirection((2,), (trigger,))], 4, 1.0, torch.Generator().manual_seed(0)
    )
    x, y = augment(images, labels)
    assert torch.equal(y, labels)
    stamped = (x != images).flatten(1).any(dim=1)
    assert torch.equal(stamped, labels == 2)


@pytest.mark.slow
def test_hardening_with_inverted_trigger_lowers_backdoor_confidence(
    backdoored_setup: BackdooredSetup,
):
    """One local epoch with FLIP's augment (universal inverted trigger of the backdoor target,
    stamped with TRUE labels) vs one plain epoch: only the hardened model loses the backdoor."""
    s = backdoored_setup
    data = LocalData(s.images[600:1200], s.labels[600:1200])
    universal = invert_many(
        s.model,
        data.images,
        data.labels,
        [InversionRequest(tuple(range(1, 10)), s.target, seed=0)],
        steps=80,
    )[0]
    before = target_probability_on_triggered(
        s.model, s.test_images, s.test_labels, s.trigger, s.target
    )
    plain, hardened = s.clone_model(), s.clone_model()
    TRAINER.train(plain, data, generator=torch.Generator().manual_seed(0))
    pool = stamped_pool(
        data.images, data.labels, [StampDirection(tuple(range(1, 10)), (universal.trigger,))]
    )
    TRAINER.train(
        hardened,
        data,
        augment=append_augment(*pool, 64, torch.Generator().manual_seed(0)),
        generator=torch.Generator().manual_seed(0),
    )
    after_plain = target_probability_on_triggered(
        plain, s.test_images, s.test_labels, s.trigger, s.target
    )
    after = target_probability_on_triggered(
        hardened, s.test_images, s.test_labels, s.trigger, s.target
    )
    with torch.no_grad():
        clean_acc = {
            name: float((m(s.test_images).argmax(1) == s.test_labels).float().mean())
            for name, m in (("backdoored", s.model), ("plain", plain), ("hardened", hardened))
        }
    print(
        f"mean target prob on triggered test images: before {before:.3f}, plain epoch "
        f"{after_plain:.3f}, FLIP-hardened epoch {after:.3f}; clean acc {clean_acc}"
    )
    assert before > 0.9
    assert after < 0.5 * after_plain and after < before - 0.4
    assert (
        clean_acc["hardened"] > 0.7
    )  # one epoch with 50% stamped samples costs clean accuracy (reported)


# --- FlipDefense / oracle / adaptive plumbing ---------------------------------------------------

FAST = dict(warmup_steps=8, pair_steps=6, batch_size=16)


@pytest.mark.slow
def test_flip_defense_state_and_rounds(backdoored_setup: BackdooredSetup):
    s = backdoored_setup
    keep = (s.labels[:400] != 9) | (torch.arange(400) < 300)  # few 9s left
    data = LocalData(s.images[:400][keep], s.labels[:400][keep])
    defense = FlipDefense(**FAST, pairs_per_round=3)
    state: dict = {}
    model = s.clone_model()
    defense.train(model, data, state, TRAINER, context(1))
    assert state["flip_distance"].shape == (10, 10) and state["flip_warmup_round"] == 1
    assert state["flip_universal_masks"].shape == (10, 28, 28)
    pairs = state["flip_last_pairs"]
    counts = np.bincount(data.labels.numpy(), minlength=10)
    assert len(pairs) == 3
    for source, target, symmetric in pairs:
        assert counts[source] > 5 and bool(symmetric) == (counts[target] > 5)
    assert len(defense.last_results) == int(sum(1 + p[2] for p in pairs))
    defense.train(model, data, state, TRAINER, context(5))
    assert state["flip_warmup_round"] == 1 and state["flip_times_selected"] == 2
    allowed = (np.ndarray, int, float, bool, str, dict)
    assert all(isinstance(v, allowed) for v in state.values())


@pytest.mark.slow
def test_flip_defense_is_deterministic_by_seed(backdoored_setup: BackdooredSetup):
    s = backdoored_setup
    data = LocalData(s.images[:200], s.labels[:200])
    outputs = []
    for _ in range(2):
        model, state = s.clone_model(), {}
        FlipDefense(**FAST).train(model, data, state, TRAINER, context(seed=7))
        outputs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(
        outputs[0], outputs[1], rtol=0, atol=1e-6
    )  # CPU SGD float round-off only


@pytest.mark.slow
def test_hardening_off_skips_inversion_and_trains_plainly(
    backdoored_setup: BackdooredSetup, monkeypatch: pytest.MonkeyPatch
):
    s = backdoored_setup
    data = LocalData(s.images[:200], s.labels[:200])
    ablated, plain = s.clone_model(), s.clone_model()
    state: dict = {}
    generator_a, generator_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ctx = RoundContext(1, 0, 10, torch.device("cpu"), generator_a)

    def no_inversion(*args: object, **kwargs: object) -> None:
        raise AssertionError("hardening=False inverted a trigger")

    monkeypatch.setattr(plan_module, "run_inversions", no_inversion)
    FlipDefense(**FAST, hardening=False).train(ablated, data, state, TRAINER, ctx)
    assert "flip_distance" not in state
    assert FlipClientState.from_dict(state).last_stats["hardening"] == 0.0
    torch.randint(2**31 - 1, (1,), generator=generator_b)  # the seed every FLIP client draws
    TRAINER.train(plain, data, generator=generator_b)
    assert all(
        torch.equal(a, b) for a, b in zip(ablated.parameters(), plain.parameters(), strict=True)
    )


def test_oracle_triggers():
    shape = (1, 28, 28)
    truth = dba_trigger(shape)
    white = oracle_trigger(FlipConfig(inverter="oracle-random-white"), shape, 1, 2)
    colourful = oracle_trigger(FlipConfig(inverter="oracle-random-colourful"), shape, 1, 2)
    assert white.num_pixels() == colourful.num_pixels() == truth.num_pixels()
    assert set(np.unique(white.pattern)) <= {0.0, 1.0}
    assert (
        oracle_trigger(FlipConfig(inverter="oracle-random-white"), shape, 2, 2).mask.tolist()
        != white.mask.tolist()
    )
    with pytest.raises(ValueError, match="needs the true trigger"):
        oracle_trigger(FlipConfig(inverter="oracle-ground-truth"), shape, 1, 2)
    given = oracle_trigger(
        FlipConfig(inverter="oracle-ground-truth"), shape, 1, 2, true_trigger=truth
    )
    assert np.array_equal(given.mask, truth.mask) and given.name.startswith("oracle-ground-truth")
    by_scale = oracle_trigger(
        FlipConfig(inverter="oracle-ground-truth", true_trigger_dba_scale=2), shape, 1, 2
    )
    assert by_scale.num_pixels() == 2 * truth.num_pixels()


@pytest.mark.slow
def test_adaptive_attacker_poisons_and_adds_inverted_samples_of_other_targets(
    backdoored_setup: BackdooredSetup,
):
    s = backdoored_setup
    data = LocalData(s.images[:300], s.labels[:300])
    defense = FlipDefense(**FAST, num_augmented=16, max_mask_fraction=1.0)
    attacker = AdaptiveAttacker(client_defense=defense)
    assert attacker.config is defense.config
    state: dict = {}
    augment = attacker.make_augment(
        s.clone_model(), data, state, context(), s.trigger, target=2, num_poison=5
    )
    x, y = augment(data.images[:64], data.labels[:64])
    assert x.shape[0] == 80 and torch.all(y[:5] == 2) and torch.equal(y[5:64], data.labels[5:64])
    assert torch.all(x[:5, :, 0, :4] == 1.0)
    assert "flip_distance" in state and state["flip_universal_masks"].shape == (10, 28, 28)
    attacker.train(s.clone_model(), data, state, TRAINER, context(2), s.trigger, 2, 5)
    # fliplab's warm-up stamps the universal trigger of every target: the attacker keeps all but its
    # own
    directions = attacker.inverted_directions(s.clone_model(), data, {}, context(3), target=2)
    targets = {d.target for d in directions}
    assert 2 not in targets and {0, 1, 3, 4, 5, 6, 7, 8, 9} <= targets
    benign, _ = hardening_directions(defense.config, s.clone_model(), data, {}, context(3))
    assert 2 in {d.target for d in benign}
    with pytest.raises(TypeError, match="defense.client='flip'"):
        AdaptiveAttacker(client_defense=None)


@pytest.mark.slow
def test_rewarm_and_large_trigger_filter(backdoored_setup: BackdooredSetup):
    s = backdoored_setup
    data = LocalData(s.images[:200], s.labels[:200])
    state: dict = {}
    defense = FlipDefense(**FAST, rewarm_every=1)
    defense.train(s.clone_model(), data, state, TRAINER, context(1))
    defense.train(s.clone_model(), data, state, TRAINER, context(4))
    assert state["flip_warmup_round"] == 4
    small, large = dba_trigger((1, 28, 28)), dba_trigger((1, 28, 28), scale=8)  # 16 and 128 pixels
    plan = HardeningPlan(
        universal=[StampDirection(None, (large,))],
        pairs=[(StampDirection((1,), (small, large), 3),)],
    )
    kept, dropped = cap_plan(plan, 0.125)
    assert kept.directions() == [StampDirection((1,), (small,), 3)] and dropped == 2
    assert cap_plan(plan, 0.25)[1] == 0  # fliplab's cap admits the 8X trigger
    oracle = HardeningPlan(universal=[StampDirection(None, (large,))], oracle=True)
    assert cap_plan(oracle, 0.125) == (oracle, 0)  # an oracle trigger is never capped


def _universal_results(mask_l1s: list[float]) -> list[InversionResult]:
    trigger = dba_trigger((1, 28, 28))
    return [
        InversionResult(trigger, target, (), True, 1.0, 0.0, l1)
        for target, l1 in enumerate(mask_l1s)
    ]


# Universal mask L1 per target measured on two cpu-small global models (seed 1, one benign client):
# the clean pre-trained model, and round 50 of a continuous attack on target 2 (ASR ~20%).
CLEAN_L1 = [84.0, 125.0, 52.0, 60.0, 82.0, 69.0, 94.0, 85.0, 49.0, 224.0]
ATTACKED_L1 = [97.0, 96.0, 60.0, 87.0, 95.0, 88.0, 109.0, 89.0, 78.0, 118.0]


def test_neural_cleanse_anomaly_index_separates_attacked_from_clean_where_the_ratio_cannot():
    """MAD index (NC): clean 1.22 < 2 < 4.04 attacked; mask/median ratio: 0.60 clean, 0.65
    attacked.
    """
    mad, ratio = (
        FlipConfig(focus_anomaly_test="mad"),
        FlipConfig(focus_anomaly_test="ratio", focus_anomaly_ratio=0.5),
    )
    either = FlipConfig()
    for l1s, expected_mad in ((CLEAN_L1, []), (ATTACKED_L1, [2])):
        results = _universal_results(l1s)
        smallest = _smallest_mask_targets(results, 1)
        assert [r.target for r in _anomalous(smallest, results, mad)] == expected_mad
        assert [r.target for r in _anomalous(smallest, results, either)] == expected_mad
        assert _anomalous(smallest, results, ratio) == []  # 0.60 and 0.65 are both above 0.5
    # test-fixture model (80 steps): ratio 0.36 is an outlier, the MAD index 1.5 is not
    fixture = _universal_results([33.2, 127.2, 78.7, 63.5, 106.7, 64.9, 116.1, 110.4, 72.4, 126.9])
    assert (
        _anomalous(fixture[:1], fixture, mad),
        [r.target for r in _anomalous(fixture[:1], fixture, either)],
    ) == ([], [0])
    failed = [
        dataclasses.replace(r, success=False) if r.target == 2 else r
        for r in _universal_results(ATTACKED_L1)
    ]
    assert _anomalous(failed, failed, mad) == []  # unsuccessful inversions never count
    constant = _universal_results([90.0] * 9 + [40.0])  # MAD = 0: any smaller mask is an outlier
    assert [r.target for r in _anomalous(constant, constant, mad)] == [9]


@pytest.mark.slow
def test_focus_finds_a_backdoor_planted_after_the_warm_up(backdoored_setup: BackdooredSetup):
    """The continuous attack plants the backdoor AFTER a client's warm-up: the cache then holds the
    clean model's large natural triggers. The neutral per-round re-inversion must still single out
    the planted target on the backdoored model as an outlier-small mask."""
    s = backdoored_setup
    data = LocalData(s.images[:300], s.labels[:300])
    config = FlipConfig(warmup_steps=80, focus_refresh_steps=80, pair_steps=4, batch_size=16)
    state: dict = {}
    clean = make_clean_model()
    hardening_directions(config, clone(clean), data, state, context(1))
    clean_masks = state["flip_universal_masks"].sum(axis=(1, 2))
    # the clean model may flag a natural class (the outlier test's known false positives; which one,
    # if any, depends on the thread count), but never the class the backdoor will target
    assert s.target not in state["flip_focus_targets"].tolist()
    assert clean_masks[s.target] > 0.5 * np.nanmedian(clean_masks)  # the clean model has no outlier
    hardening_directions(config, s.clone_model(), data, state, context(2))
    masks = state["flip_universal_masks"].sum(axis=(1, 2))
    assert state["flip_focus_targets"].tolist() == [s.target]
    assert masks[s.target] < 0.5 * np.nanmedian(masks) and state["flip_suspect_target"] == s.target


@pytest.mark.slow
def test_focus_hardens_smallest_universal_trigger_each_round(backdoored_setup: BackdooredSetup):
    """Default deviation from the paper: later rounds refresh the universal triggers and stamp the
    smallest one; on the backdoored model that is the planted target's (never told to FLIP)."""
    s = backdoored_setup
    data = LocalData(s.images[:300], s.labels[:300])
    steps = dict(warmup_steps=60, focus_refresh_steps=80, pair_steps=4, batch_size=16)
    state: dict = {}
    defense = FlipDefense(**steps)
    defense.train(s.clone_model(), data, state, TRAINER, context(1))
    model = s.clone_model()
    ctx = context(2)
    directions, results = hardening_directions(defense.config, model, data, state, ctx)
    assert state["flip_focus_targets"].tolist() == [s.target]
    focus_direction = directions[0]
    assert s.target not in focus_direction.sources and len(focus_direction.sources) == 9
    assert len(directions) == 1 + len(results)  # focus trigger + the paper's pair directions
    masks = state["flip_universal_masks"].sum(axis=(1, 2))
    assert np.nanargmin(masks) == s.target and masks[s.target] < 0.5 * np.nanmedian(masks)
    assert state["flip_suspect_target"] == s.target
    # no outlier this round (ratio ~0): the remembered suspect trigger is stamped instead
    strict = dataclasses.replace(defense.config, focus_anomaly_index=1e9, focus_anomaly_ratio=1e-6)
    directions, _ = hardening_directions(strict, s.clone_model(), data, state, context(3))
    assert (
        state["flip_focus_targets"].size == 0
        and directions[0].triggers[0].name == f"suspect->{s.target}"
    )
    assert s.target not in directions[0].sources
    paper_state: dict = {}
    paper = FlipConfig.paper(**steps)
    hardening_directions(paper, s.clone_model(), data, paper_state, context(1))
    paper_directions, paper_results = hardening_directions(
        paper, s.clone_model(), data, paper_state, context(2)
    )
    assert paper.focus_smallest_universal == 0 and paper_state["flip_focus_targets"].size == 0
    assert len(paper_directions) == len(paper_results)
