"""One round of the engine: schedules, client hooks, update scaling, the global rule, FLTrust's root
set.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from engine_fixtures import micro_config, single_thread

from deepfl.attacks import AttackSchedule
from deepfl.client import LocalData, LocalTrainer, build_client_defense
from deepfl.config import ConfigError, TrainConfig, resolve
from deepfl.presets import preset
from deepfl.runner import Experiment
from deepfl.server import per_client_diagnostics


def test_continuous_schedule_has_the_attackers_in_every_attack_round() -> None:
    cfg = resolve(preset("paper"))
    schedule = AttackSchedule(cfg)
    assert len(set(schedule.attacker_ids)) == 4
    for round_index in (1, 10):
        plan = schedule.plan(round_index)
        assert plan.phase == "pretrain" and not plan.attackers and len(set(plan.clients)) == 10
    for round_index in (11, 57, 100):
        plan = schedule.plan(round_index)
        assert sorted(plan.attackers) == sorted(schedule.attacker_ids)
        assert sorted(plan.attackers.values()) == [0, 1, 2, 3]  # one DBA piece each
        benign = set(plan.clients) - set(plan.attackers)
        assert len(benign) == 6 and not benign & set(schedule.attacker_ids)


def test_single_shot_schedule_sends_attacker_k_in_the_kth_attack_round() -> None:
    cfg = resolve(preset("paper"), {"attack": {"kind": "single-shot"}})
    schedule = AttackSchedule(cfg)
    for k, round_index in enumerate([12, 14, 16, 18]):
        plan = schedule.plan(round_index)
        assert plan.attackers == {schedule.attacker_ids[k]: k}
    assert all(not schedule.plan(r).attackers for r in (11, 13, 19, 50))


def test_random_selection_only_attacks_with_sampled_attackers() -> None:
    cfg = resolve(preset("paper"), {"attack": {"selection": "random"}})
    schedule = AttackSchedule(cfg)
    counts = [len(schedule.plan(r).attackers) for r in range(11, 101)]
    assert all(
        set(schedule.plan(r).attackers) <= set(schedule.plan(r).clients) for r in range(11, 30)
    )
    assert (
        0 in counts and max(counts) >= 1
    )  # 4 attackers among 100 clients: often none, sometimes some
    assert np.mean(counts) == pytest.approx(0.4, abs=0.25)


def test_local_trainer_is_seeded_and_fits_its_data() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(96, 1, 28, 28, generator=generator)
    labels = (images.mean(dim=(1, 2, 3)) > 0.5).long()
    images[labels == 1, :, :4, :4] = 1.0  # a learnable feature
    data = LocalData(images, labels)
    trainer = LocalTrainer(
        TrainConfig(lr=0.05, momentum=0.9, weight_decay=0.0, batch_size=32, epochs=8)
    )

    def trained(seed: int) -> tuple[torch.Tensor, dict]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 2))
        stats = trainer.train(model, data, generator=torch.Generator().manual_seed(seed))
        return torch.nn.utils.parameters_to_vector(model.parameters()), stats

    with single_thread():
        first, stats = trained(1)
        again, _ = trained(1)
        other, _ = trained(2)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert stats["steps"] == 8 * 3 and stats["samples"] == 8 * 96


class ShiftAll:
    """A client behaviour that adds ``amount`` to every state entry and counts its calls in
    ``state``.
    """

    def __init__(self, amount: float) -> None:
        self.amount = amount

    def _shift(self, model: torch.nn.Module, state: dict) -> None:
        with torch.no_grad():
            for tensor in model.state_dict().values():
                tensor.add_(self.amount)
        state["calls"] = state.get("calls", 0) + 1

    def train(self, model, data, state, trainer, ctx, *attack_args) -> None:  # both hook signatures
        assert isinstance(data, LocalData) and ctx.client_id >= 0 and ctx.num_classes == 10
        self._shift(model, state)


def test_attack_round_scales_attacker_updates_and_applies_the_global_rule(tmp_path) -> None:
    cfg = micro_config(tmp_path, attack={"kind": "single-shot", "rounds": [2]})
    experiment = Experiment(cfg, tmp_path / "run")
    experiment.client_defense, experiment.attacker = ShiftAll(1.0), ShiftAll(1.0)
    before = experiment.global_state.clone()
    row = experiment.run_round(2)
    attacker = row["attackers"]
    assert len(attacker) == 1 and row["accepted"] == row["clients"]
    # Model replacement: scale = n / eta_g, so fedavg's G += eta_g * mean(updates) moves G by the
    # attacker's whole (unscaled) update (ones) plus eta_g * the benign mean.
    n = len(row["clients"])
    assert cfg.attack.scale == pytest.approx(n / 0.1)
    expected_shift = 0.1 * (cfg.attack.scale + (n - 1) * 1.0) / n
    assert expected_shift == pytest.approx(1.0 + 0.1 * (n - 1) / n)
    assert torch.allclose(
        experiment.global_state - before, torch.full_like(before, expected_shift), atol=1e-4
    )
    assert experiment.attacker_states[attacker[0]] == {"calls": 1}
    assert all(
        experiment.client_states[c] == {"calls": 1} for c in row["clients"] if c not in attacker
    )


@pytest.mark.slow
def test_pretraining_rounds_ignore_the_client_defense(tmp_path) -> None:
    experiment = Experiment(micro_config(tmp_path), tmp_path / "run")
    experiment.client_defense = ShiftAll(1.0)
    before = experiment.global_state.clone()
    experiment.run_round(1)
    assert not experiment.client_states
    assert (experiment.global_state - before).abs().max() < 0.5  # real SGD steps, not the +1 shift


def test_sample_weighted_rule_is_plain_fedavg(tmp_path) -> None:
    cfg = micro_config(tmp_path, server={"rule": "sample-weighted"}, attack={"kind": "none"})
    experiment = Experiment(cfg, tmp_path / "run")
    captured = {}

    def fake_updates(plan, trained=None):
        captured["clients"] = plan.clients
        return torch.stack(
            [torch.full_like(experiment.global_state, float(c)) for c in plan.clients]
        )

    experiment._train_clients = fake_updates
    before = experiment.global_state.clone()
    experiment.run_round(2)
    sizes = np.array(
        [len(experiment.federation.clients[c]) for c in captured["clients"]], dtype=float
    )
    expected = float(np.dot(sizes, captured["clients"]) / sizes.sum())
    assert torch.allclose(
        experiment.global_state - before, torch.full_like(before, expected), atol=1e-4
    )


def test_weighting_rules_record_each_clients_weight_in_the_round_row(tmp_path) -> None:
    cfg = micro_config(
        tmp_path,
        attack={"kind": "none"},
        defense={"server": "foolsgold", "params": {"features": "all"}},
    )
    experiment = Experiment(cfg, tmp_path / "run")
    captured = {}

    def sybil_pair_and_one_honest(plan, trained=None):
        captured["clients"] = list(plan.clients)
        sybil = torch.ones_like(experiment.global_state)
        honest = torch.zeros_like(sybil)
        honest[:10] = 1.0
        return torch.stack([sybil, sybil, -honest])

    experiment._train_clients = sybil_pair_and_one_honest
    row = experiment.run_round(2)
    # FoolsGold gives the two identical updates weight 0 and the honest one weight 1
    assert row["aggregation"]["weights"] == [0.0, 0.0, 1.0]
    assert row["accepted"] == [captured["clients"][2]]
    assert "aggregation" not in experiment.run_round(1)  # clean pre-training: plain FedAvg


def test_per_client_diagnostics_align_with_the_rounds_clients() -> None:
    info = {"weights": [0.5, 0.25], "trust_scores": [1.0], "excluded_nonfinite": [1]}
    # row 1 was dropped as non-finite, so the two weights belong to rows 0 and 2; the trust
    # scores (one value for two kept rows) are not per-update and are left out
    assert per_client_diagnostics(info, 3) == {"weights": [0.5, None, 0.25]}
    assert per_client_diagnostics({"clip_bound": 2.0}, 3) == {}


@pytest.mark.slow
def test_root_set_is_removed_from_client_data_for_every_defense(tmp_path) -> None:
    cfg = micro_config(tmp_path, defense={"server": "fltrust"})
    experiment = Experiment(cfg, tmp_path / "run")
    federation = experiment.federation
    assert federation.root is not None and len(federation.root) == 100
    assert sum(len(c) for c in federation.clients) == cfg.data.train_limit - 100
    row = experiment.run_round(2)
    assert "server_update" in row["seconds"] and set(row["accepted"]) <= set(row["clients"])
    plain = Experiment(micro_config(tmp_path), tmp_path / "plain")
    assert plain.federation.root is None
    # The root set is reserved in every run, so a defense never changes who holds which samples.
    for fltrust_client, plain_client in zip(
        federation.clients, plain.federation.clients, strict=True
    ):
        assert torch.equal(fltrust_client.labels, plain_client.labels)
        assert torch.equal(fltrust_client.images, plain_client.images)


def test_data_subsets_are_random_but_fixed_across_seeds(tmp_path) -> None:
    # FLTrust so that the (seed-dependent, always reserved) root set is visible: clients + root =
    # the subset.
    first = Experiment(
        micro_config(tmp_path, defense={"server": "fltrust"}), tmp_path / "a"
    ).federation
    cfg = dataclasses.replace(micro_config(tmp_path, defense={"server": "fltrust"}), seed=5)
    second = Experiment(cfg, tmp_path / "b").federation
    assert len(first.eval_sets.clean_labels) == 300
    assert np.array_equal(first.eval_sets.clean_labels, second.eval_sets.clean_labels)
    assert np.bincount(first.eval_sets.clean_labels, minlength=10).min() > 0
    first_train = torch.cat([c.labels for c in [*first.clients, first.root]]).sort().values
    assert torch.equal(
        first_train, torch.cat([c.labels for c in [*second.clients, second.root]]).sort().values
    )
    assert [len(c) for c in first.clients] != [
        len(c) for c in second.clients
    ]  # the split does follow the seed


def test_evaluation_sets_and_metrics(tmp_path) -> None:
    experiment = Experiment(micro_config(tmp_path), tmp_path / "run")
    sets = experiment.federation.eval_sets
    assert len(sets.backdoor_images) == int((sets.clean_labels != sets.target).sum())
    evaluation = experiment.evaluate()
    result = evaluation.result
    assert result.taus == (0.0, 0.5) and result.acc_at(0.5) <= result.acc_at(0.0)
    assert result.asr_at(0.5) <= result.asr_at(0.0)
    predicted = evaluation.clean_probs.argmax(axis=1)
    assert result.acc_at(0.0) == pytest.approx(float(np.mean(predicted == sets.clean_labels)))
    assert result.per_class_acc is not None and len(result.per_class_acc) == 10
    with pytest.deprecated_call():  # the str-keyed dicts, for one release
        assert evaluation.acc == result.to_dict()["acc"] and set(evaluation.asr) == {"0.0", "0.5"}


def test_unknown_client_defense_and_bad_defense_params_are_reported_when_resolved(tmp_path) -> None:
    # refused by the config itself, before an Experiment reads any data
    with pytest.raises(ConfigError, match="defense.client must be one of none, flip; got 'magic'"):
        micro_config(tmp_path, defense={"client": "magic"})
    with pytest.raises(
        ConfigError, match=r"unknown key 'm' in defense.params of defense.server='multikrum'"
    ):
        micro_config(tmp_path, defense={"server": "multikrum", "params": {"m": 3}})
    with pytest.raises(ConfigError, match="defense.server must be one of .*krum.*; got 'krumm'"):
        micro_config(tmp_path, defense={"server": "krumm"})
    # the engine's builders still refuse what bypasses the config
    with pytest.raises(ValueError, match="unknown client defense 'magic'; known: flip, none"):
        build_client_defense("magic", {})
