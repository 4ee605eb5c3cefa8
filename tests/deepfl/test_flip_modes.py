"""FLIP's three modes, per-data-set defaults, the release's distance / stamping, docs table (issue
17).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from flip_fixtures import BackdooredSetup, backdoored_setup  # noqa: F401  (session fixture)

from deepfl.client import LocalData, LocalTrainer, RoundContext, build_client_defense
from deepfl.config import TrainConfig
from deepfl.flip import MODES, FlipConfig, FlipDefense
from deepfl.flip import plan as plan_module
from deepfl.flip.defense import batch_steps, make_hardening_augment, trainer_options
from deepfl.flip.distance import update_distance_matrix, warmup_distance_matrix
from deepfl.flip.hardening import StampDirection, replace_augment, rotating_augment
from deepfl.flip.inversion import InversionResult
from deepfl.flip.mode_docs import DOC_PATH, render
from deepfl.flip.plan import HardeningPlan, _box_initialisation, plan_hardening
from deepfl.flip.selection import select_pairs
from fldata.triggers import Trigger, dba_trigger


def context(round_index: int = 1, client_id: int = 0, seed: int = 0) -> RoundContext:
    return RoundContext(
        round_index, client_id, 10, torch.device("cpu"), torch.Generator().manual_seed(seed)
    )


# --- the modes ----------------------------------------------------------------------------------


def test_paper_mode_uses_only_what_the_paper_states():
    paper = FlipConfig.paper()
    assert not paper.warm_start_from_universal and not paper.harden_with_universal
    assert (
        paper.distance == "loss_variance"
        and paper.pair_priority == "largest"
        and paper.exploration_prob == 0
    )
    assert (
        paper.pairs_per_round is None
        and paper.pair_schedule == "rotate"
        and paper.pair_hold_batches == 1
    )
    assert (paper.min_samples_per_label, paper.symmetric_rule) == (5, "client")
    assert (paper.augment_mode, paper.num_augmented, paper.hardening_optimizer) == (
        "append",
        64,
        "sgd",
    )
    assert (
        paper.hardening_lr is None
        and paper.hardening_epochs is None
        and paper.hardening_max_steps is None
    )
    assert paper.max_mask_fraction == 1.0 and paper.focus_smallest_universal == 0
    assert not paper.leak_true_trigger_box


@pytest.mark.parametrize(
    "dataset, portion, threshold, min_samples, lr, epochs, cap",
    [
        ("mnist", 0.5, 0.9, 1, 0.01, 10, 0.125),
        ("fashion-mnist", 0.6, 0.9, 1, 0.01, 5, 0.125),
        ("cifar10", 0.9, 0.85, 5, 0.001, 8, 0.25),
    ],
)
def test_release_mode_per_data_set(dataset, portion, threshold, min_samples, lr, epochs, cap):
    release = FlipConfig.release(dataset)
    assert (
        release.replace_portion,
        release.attack_success_threshold,
        release.min_samples_per_label,
    ) == (portion, threshold, min_samples)
    assert (release.hardening_lr, release.hardening_epochs, release.max_mask_fraction) == (
        lr,
        epochs,
        cap,
    )
    assert (release.distance, release.exploration_prob, release.symmetric_rule) == (
        "mask_growth",
        0.3,
        "batch",
    )
    assert (release.augment_mode, release.hardening_optimizer, release.hardening_betas) == (
        "replace",
        "adam",
        (0.5, 0.9),
    )
    assert release.hardening_max_steps == 110 and release.pair_hold_batches == 2
    assert not release.leak_true_trigger_box


def test_fliplab_is_the_default_and_modes_take_the_data_set():
    assert (
        FlipConfig()
        == FlipConfig.fliplab()
        == FlipConfig.from_params({})
        == FlipConfig.from_params({"mode": "fliplab"})
    )
    assert FlipConfig.fliplab().focus_smallest_universal == 1
    for mode in MODES:
        cifar = FlipConfig.for_mode(mode, "cifar10")
        assert (cifar.attack_success_threshold, cifar.rejection_tau, cifar.replace_portion) == (
            0.85,
            0.4,
            0.9,
        )
        assert FlipConfig.for_mode(mode, "digits") == FlipConfig.for_mode(mode, "mnist")
    overridden = FlipConfig.from_params(
        {"mode": "paper", "hardening": False, "warmup_steps": 7}, "cifar10"
    )
    assert overridden == dataclasses.replace(
        FlipConfig.paper("cifar10"), hardening=False, warmup_steps=7
    )
    assert (
        build_client_defense(
            "flip", {"mode": "release"}, dataset="fashion-mnist"
        ).config.replace_portion
        == 0.6
    )
    with pytest.raises(ValueError, match="unknown FLIP mode"):
        FlipConfig.from_params({"mode": "faithful"})
    with pytest.raises(ValueError, match="unknown key 'mode'"):
        FlipConfig.from_dict({"mode": "paper"})
    with pytest.warns(DeprecationWarning):
        assert FlipConfig.paper_faithful(warmup_steps=3) == FlipConfig.paper(warmup_steps=3)


def test_docs_table_is_generated_from_the_classmethods():
    assert DOC_PATH.read_text() == render(), (
        "docs/flip_modes.md is stale: run python -m deepfl.flip.mode_docs"
    )
    assert "| `distance` | loss_variance | mask_growth | loss_variance |" in render()


def test_hardening_options_reach_the_trainer():
    settings = TrainConfig(lr=0.1, batch_size=64, epochs=1)
    release, paper = FlipConfig.release(), FlipConfig.paper()
    assert trainer_options(paper) == {}
    assert trainer_options(release) == {
        "optimizer": "adam",
        "betas": (0.5, 0.9),
        "lr": 0.01,
        "weight_decay": 0.0,
        "epochs": 10,
        "max_steps": 110,
    }
    trainer = LocalTrainer(settings)
    assert batch_steps(paper, trainer, 600) == 10 and batch_steps(release, trainer, 600) == 100
    assert batch_steps(release, trainer, 1000) == 110


def test_paper_and_fliplab_train_alike_without_hardening():
    """App. A.5 (deepfl.reproduce.tables.no_hardening) runs one of the two: with nothing stamped,
    a client differs only through its training options, and these agree."""
    for dataset in ("mnist", "fashion-mnist", "cifar10"):
        paper, fliplab = FlipConfig.paper(dataset), FlipConfig.fliplab(dataset)
        assert trainer_options(paper) == trainer_options(fliplab) == {}
        assert trainer_options(FlipConfig.release(dataset)) != {}


# --- the release's distance and stamping ---------------------------------------------------------


def _result(source: int, target: int, l1: float) -> InversionResult:
    trigger = dba_trigger((1, 28, 28))
    return InversionResult(trigger, target, (source,), True, 1.0, 0.0, l1)


def test_mask_growth_distance_is_the_release_moving_average_of_relative_growth():
    universal = [
        InversionResult(
            dba_trigger((1, 28, 28)), t, tuple(s for s in range(3) if s != t), True, 1.0, 0.0, l1
        )
        for t, l1 in enumerate([40.0, 80.0, 20.0])
    ]
    distance = warmup_distance_matrix(universal, 3, "mask_growth")
    assert distance[0, 1] == pytest.approx(1.0) and distance[1, 0] == pytest.approx(
        0.5
    )  # L1 / max L1
    sizes = warmup_distance_matrix(universal, 3, "mask_size")
    updated = update_distance_matrix(distance, [_result(0, 1, 100.0)], "mask_growth", 0.5, sizes)
    assert updated[0, 1] == pytest.approx((1.0 + (100.0 - 80.0) / 80.0) / 2)
    assert updated[1, 0] == distance[1, 0]
    with pytest.raises(ValueError, match="mask_sizes"):
        update_distance_matrix(distance, [_result(0, 1, 100.0)], "mask_growth", 0.5)


def test_replace_augment_decides_symmetric_per_batch():
    """Release rule (> min samples in the batch): both directions of the pair with
    int(portion * min(n_s, n_t)) each; only the forward one when the target is missing; none
    when the source is missing."""
    trigger = Trigger(np.ones((4, 4)), np.ones((1, 4, 4)))
    pair = (StampDirection((1,), (trigger,), 2), StampDirection((2,), (trigger,), 1))
    augment = replace_augment(pair, 3, 0.5, torch.Generator().manual_seed(0), min_in_batch=1)
    x = torch.zeros(12, 1, 4, 4)

    def stamped(labels: list[int]) -> list[int]:
        y = torch.tensor(labels)
        out, same = augment(x[: len(labels)], y)
        assert torch.equal(same, y)
        changed = out.flatten(1).any(dim=1)
        return [int((changed & (y == c)).sum()) for c in (0, 1, 2)]

    assert stamped([1] * 6 + [2] * 4 + [0] * 2) == [0, 2, 2]  # symmetric: int(0.5 * min(6, 4)) each
    assert stamped([1] * 6 + [2] * 1 + [0] * 5) == [0, 3, 0]  # target not available: asymmetric
    assert stamped([1] * 1 + [2] * 6 + [0] * 5) == [0, 0, 0]  # source not available: nothing


def test_rotating_augment_plays_universal_slots_once_then_cycles_pairs():
    seen: list[str] = []

    def tag(name: str):
        def augment(x, y):
            seen.append(name)
            return x, y

        return augment

    augment = rotating_augment([tag("u0"), tag("u1")], [tag("p0"), tag("p1")], hold=2)
    for _ in range(8):
        augment(torch.zeros(1), torch.zeros(1))
    assert seen == ["u0", "u1", "p0", "p0", "p1", "p1", "p0", "p0"]


def test_leak_box_covers_the_true_trigger_bounding_box():
    truth = dba_trigger((3, 32, 32))
    init = _box_initialisation(truth, FlipConfig())
    rows, cols = np.nonzero(truth.mask)
    box = init.mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert np.all(box == 1.0) and init.mask.sum() == box.size + 0.1 * (init.mask.size - box.size)
    with pytest.raises(ValueError, match="needs the true trigger"):
        plan_hardening(
            FlipConfig(leak_true_trigger_box=True),
            None,
            LocalData(torch.zeros(4, 3, 32, 32), torch.arange(4)),
            {},
            context(),
        )


# --- modes on the planted-backdoor fixture
# ---------------------------------------------------------

STEPS = dict(warmup_steps=6, pair_steps=4, focus_refresh_steps=6, batch_size=8)


def test_paper_mode_inverts_one_pair_per_batch_from_the_neutral_mask(
    backdoored_setup: BackdooredSetup, monkeypatch: pytest.MonkeyPatch
):
    s = backdoored_setup
    data = LocalData(s.images[:320], s.labels[:320])
    config = FlipConfig.paper(**STEPS)
    seen: list[np.ndarray] = []  # the matrix the selection ranks (take_pairs updates it after)

    def recording_select_pairs(distance: np.ndarray, *args, **kwargs):
        seen.append(distance.copy())
        return select_pairs(distance, *args, **kwargs)

    monkeypatch.setattr(plan_module, "select_pairs", recording_select_pairs)
    state: dict = {}
    plan = plan_hardening(config, s.clone_model(), data, state, context(1), batch_steps=5)
    assert plan.universal == [] and len(plan.pairs) == 5  # 5 batches, 5 distinct pairs
    assert len(seen) == 1
    chosen = [(int(s_), int(t)) for s_, t, _ in state["flip_last_pairs"]]
    available = (
        np.bincount(s.labels[:320].numpy(), minlength=seen[0].shape[0])
        > config.min_samples_per_label
    )
    ranked = np.where(available[:, None], np.nan_to_num(seen[0], nan=-np.inf), -np.inf)
    picked = [ranked[pair] for pair in chosen]
    assert picked[0] == ranked.max() and picked == sorted(picked, reverse=True)  # largest first
    inverted = {(src, d.target) for pair in plan.pairs for d in pair for src in d.sources or ()}
    moved = ~np.isclose(state["flip_distance"], seen[0], rtol=0, atol=0, equal_nan=True)
    changed = {(int(a), int(b)) for a, b in np.argwhere(moved)}
    assert changed <= inverted  # the update after inversion touches only the inverted directions
    assert all(
        len(pair) == 1 + int(sym)
        for pair, (_, _, sym) in zip(plan.pairs, state["flip_last_pairs"], strict=True)
    )
    later = plan_hardening(config, s.clone_model(), data, state, context(2), batch_steps=5)
    assert later.universal == [] and state["flip_warmup_round"] == 1  # cached: no second warm-up


def test_oracle_pair_target_hardens_only_pairs_into_the_target(backdoored_setup: BackdooredSetup):
    s = backdoored_setup
    data = LocalData(s.images[:320], s.labels[:320])
    config = FlipConfig.paper(oracle_pair_target=3, **STEPS)
    state: dict = {}
    plan = plan_hardening(config, s.clone_model(), data, state, context(1), batch_steps=5)
    chosen = [(int(s_), int(t)) for s_, t, _ in state["flip_last_pairs"]]
    assert len(chosen) == 5 and {t for _, t in chosen} == {3}
    stamped = {direction.target for pair in plan.pairs for direction in pair}
    assert 3 in stamped and stamped <= {3} | {source for source, _ in chosen}  # reverse: s


@pytest.mark.slow
def test_abs_replaces_every_inversion_and_feeds_the_distance(backdoored_setup: BackdooredSetup):
    s = backdoored_setup
    data = LocalData(s.images[:200], s.labels[:200])
    config = FlipConfig(
        inverter="abs", abs_steps=8, abs_num_candidates=2, **{**STEPS, "batch_size": 32}
    )
    state: dict = {}
    plan = plan_hardening(config, s.clone_model(), data, state, context(1))
    assert plan.universal and all(
        d.triggers[0].name.startswith("abs[") for d in plan.universal
    )  # warm-up
    assert all(len(d.triggers) == 2 for pair in plan.pairs for d in pair)  # candidates
    assert np.isfinite(state["flip_distance"]).sum() >= 9 * 9
    refresh = plan_hardening(config, s.clone_model(), data, state, context(2))
    assert state["flip_refresh_round"] == 2
    assert all(d.triggers[0].name.startswith(("abs[", "suspect")) for d in refresh.universal)


def test_release_mode_rotates_slots_in_place(backdoored_setup: BackdooredSetup):
    """Release warm-up round: the universal triggers one per batch (in place), then a pair per 2
    batches.
    """
    s = backdoored_setup
    data = LocalData(s.images[:300], s.labels[:300])
    config = FlipConfig.release(**STEPS, max_mask_fraction=1.0, pairs_per_round=2)
    plan = plan_hardening(config, s.clone_model(), data, {}, context(1))
    assert len(plan.universal) == 10 and len(plan.pairs) == 2
    augment = make_hardening_augment(config, data, plan, context(1))
    x, y = data.images[:64], data.labels[:64]
    for batch in range(10):
        out, labels = augment(x, y)
        changed = out.flatten(1).any(dim=1) & (out != x).flatten(1).any(dim=1)
        assert torch.equal(labels, y) and out.shape == x.shape  # in place, true labels
        assert not changed[
            y == plan.universal[batch].target
        ].any()  # its target's samples are not sources
    pair_batch, _ = augment(x, y)
    changed = (pair_batch != x).flatten(1).any(dim=1)
    assert set(y[changed].tolist()) <= {d.sources[0] for d in plan.pairs[0]}


def test_flip_defense_passes_the_release_optimiser_to_the_trainer(
    backdoored_setup: BackdooredSetup,
):
    s = backdoored_setup
    calls: list[dict] = []

    class Recording(LocalTrainer):
        def train(self, model, data, **options):
            calls.append(options)
            return {}

    defense = FlipDefense(mode="release", **STEPS, pairs_per_round=1)
    defense.train(
        s.clone_model(),
        LocalData(s.images[:100], s.labels[:100]),
        {},
        Recording(TrainConfig()),
        context(),
    )
    assert {k: calls[0][k] for k in ("optimizer", "lr", "betas", "max_steps", "epochs")} == {
        "optimizer": "adam",
        "lr": 0.01,
        "betas": (0.5, 0.9),
        "max_steps": 110,
        "epochs": 10,
    }
    assert HardeningPlan().directions() == []
