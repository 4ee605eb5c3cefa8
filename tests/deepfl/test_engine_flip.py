"""FLIP inside the engine at micro scale (issue 17 item 6): modes reach the clients, a planted
backdoor is reduced, resume is exact with FLIP client state, the adaptive attacker inverts as the
run's FLIP clients do, and the run writes flip_triggers.npz."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_fixtures import comparable, micro_config, single_thread

from deepfl.flip import MODES, FlipConfig
from deepfl.io import read_jsonl
from deepfl.runner import Experiment
from fldata.triggers import poison_batch

SMALL = {"warmup_steps": 8, "pair_steps": 4, "focus_refresh_steps": 8, "batch_size": 8}


def flip_config(tmp_path, mode: str, **sections):
    defense = {
        "client": "flip",
        "client_params": {"mode": mode, **SMALL},
        **sections.pop("defense", {}),
    }
    return micro_config(tmp_path, defense=defense, **sections)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.slow
def test_each_mode_reaches_the_clients(tmp_path, mode, monkeypatch) -> None:
    exp = Experiment(flip_config(tmp_path, mode, run={"rounds": 2}), tmp_path / mode)
    assert exp.client_defense.config == FlipConfig.for_mode(mode, "mnist", **SMALL)
    calls: list[dict] = []
    original = exp.benign_trainer.train

    def recording(model, data, **options):
        calls.append(options)
        return original(model, data, **options)

    monkeypatch.setattr(exp.benign_trainer, "train", recording)
    with single_thread():
        exp.run()
    flip_calls = [
        call for call in calls if "augment" in call
    ]  # FLIP clients (pre-training passes none)
    assert len(flip_calls) == 2  # round 2: 3 clients, 1 attacker
    expected = (
        {
            "optimizer": "adam",
            "lr": 0.01,
            "betas": (0.5, 0.9),
            "epochs": 10,
            "max_steps": 110,
            "weight_decay": 0.0,
        }
        if mode == "release"
        else {}
    )
    assert all(
        {k: v for k, v in call.items() if k not in ("augment", "generator")} == expected
        for call in flip_calls
    )
    states = list(exp.client_states.values())
    assert states and all(state["flip_warmup_round"] == 2 for state in states)
    if (
        mode == "release"
    ):  # the release's distance: the universal mask sizes normalised by the largest
        assert all(np.nanmax(state["flip_mask_size"]) > 0 for state in states)
    triggers = np.load(tmp_path / mode / "flip_triggers.npz")
    assert set(triggers["kind"]) <= {"warmup", "pair"} and "warmup" in set(triggers["kind"])
    assert triggers["masks"].shape[1:] == (28, 28) and triggers["patterns"].shape[1:] == (1, 28, 28)
    assert (
        len(
            {len(triggers[key]) for key in ("masks", "client", "round", "target", "source", "kind")}
        )
        == 1
    )


def _plant_backdoor(exp: Experiment, steps: int = 150) -> None:
    """Train the global model on the clients' pooled data with every batch 20/64 poisoned (the
    engine's test trigger, target 2), as a backdoored converged global model."""
    images = torch.cat([client.images for client in exp.federation.clients])
    labels = torch.cat([client.labels for client in exp.federation.clients])
    trigger, generator = exp.test_trigger, torch.Generator().manual_seed(0)
    exp.flat.set(exp.global_state)
    optimizer = torch.optim.SGD(exp.model.parameters(), lr=0.05, momentum=0.9)
    exp.model.train()
    for _ in range(steps):
        batch = torch.randint(images.shape[0], (64,), generator=generator)
        x, y = poison_batch(images[batch], labels[batch], trigger, exp.cfg.attack.target, 20)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(exp.model(x), y).backward()
        optimizer.step()
    exp.global_state = exp.flat.get()


@pytest.mark.slow
def test_fliplab_reduces_a_planted_backdoor(tmp_path) -> None:
    """Same planted global model, two benign rounds (plain FedAvg, 2 local epochs): plain clients
    keep the backdoor, fliplab clients (inverting the backdoor target's trigger, never told it)
    remove most of it (measured: ASR 1.00 -> 1.00 plain, 0.01 fliplab)."""
    asr = {}
    for client in ("none", "flip"):
        params = (
            {
                "client_params": {
                    "mode": "fliplab",
                    "warmup_steps": 30,
                    "focus_refresh_steps": 30,
                    "pair_steps": 5,
                    "batch_size": 8,
                }
            }
            if client == "flip"
            else {}
        )
        cfg = micro_config(
            tmp_path,
            attack={"kind": "none"},
            server={"global_lr": 1.0},
            benign={"epochs": 2},
            run={"pretrain_rounds": 0, "rounds": 2, "cache_dir": str(tmp_path / "nocache")},
            defense={"client": client, **params},
        )
        exp = Experiment(cfg, tmp_path / client)
        with single_thread():
            _plant_backdoor(exp)
            planted = exp.evaluate().result.asr_at(0.0)
            asr[client] = exp.run()["final"]["asr"]["0.0"]
    print(
        f"planted ASR {planted:.3f}; after 2 rounds: FedAvg {asr['none']:.3f}, fliplab "
        f"{asr['flip']:.3f}"
    )
    assert planted > 0.9 and asr["none"] > 0.8
    assert asr["flip"] < 0.5 * asr["none"]


@pytest.mark.slow
def test_resumed_flip_run_matches_an_uninterrupted_one(tmp_path) -> None:
    cfg = flip_config(tmp_path, "fliplab", run={"rounds": 4})
    with single_thread():
        full = Experiment(cfg, tmp_path / "full").run()
        assert Experiment(cfg, tmp_path / "killed").run(stop_after=3) is None
        again = Experiment(cfg, tmp_path / "killed")
        resumed = again.run()
    # some client of round 4 had been selected before: it refreshed from its checkpointed FLIP state
    assert max(state["flip_times_selected"] for state in again.client_states.values()) >= 2
    assert resumed["final"] == full["final"]
    assert comparable(read_jsonl(tmp_path / "killed" / "metrics.jsonl")) == comparable(
        read_jsonl(tmp_path / "full" / "metrics.jsonl")
    )
    assert (tmp_path / "killed" / "flip_triggers.npz").read_bytes() == (
        tmp_path / "full" / "flip_triggers.npz"
    ).read_bytes()


@pytest.mark.slow
def test_adaptive_attacker_inverts_with_the_run_defense_config(tmp_path) -> None:
    cfg = flip_config(tmp_path, "paper", attack={"behaviour": "adaptive"}, run={"rounds": 2})
    exp = Experiment(cfg, tmp_path / "adaptive")
    assert exp.attacker.config is exp.client_defense.config
    with single_thread():
        exp.run()
    attacker_state = next(iter(exp.attacker_states.values()))
    assert attacker_state["flip_warmup_round"] == 2  # it ran the benign clients' warm-up
    with pytest.raises(ValueError, match="defense.client='flip'"):
        Experiment(micro_config(tmp_path, attack={"behaviour": "adaptive"}), tmp_path / "no-flip")
    with pytest.raises(ValueError, match="unknown key 'warmup_steps' in attack.behaviour_params"):
        Experiment(
            flip_config(
                tmp_path,
                "paper",
                attack={"behaviour": "adaptive", "behaviour_params": {"warmup_steps": 5}},
            ),
            tmp_path / "x",
        )


@pytest.mark.slow
def test_vectorised_run_trains_attackers_batched_and_flip_clients_one_by_one(
    tmp_path, monkeypatch
) -> None:
    """run.vectorise=true with FLIP: the standard attackers train as one batched group, the FLIP
    clients are prepared (batched inversion) and hardened one by one; the round's updates match the
    sequential run's."""
    updates, start = {}, None
    for vectorise in (False, True):
        cfg = flip_config(tmp_path, "fliplab", run={"rounds": 2, "vectorise": vectorise})
        exp = Experiment(cfg, tmp_path / f"v{vectorise}")
        prepared: list[int] = []
        monkeypatch.setattr(
            exp.client_defense,
            "prepare_round",
            _counting(exp.client_defense.prepare_round, prepared),
        )
        with single_thread():
            exp.run(stop_after=1)
            start = exp.global_state.clone() if start is None else start
            exp.global_state = start.clone()  # the same round-2 global model in both runs
            plan = exp.schedule.plan(2)
            updates[vectorise] = exp._train_clients(plan)
        assert prepared == [len(plan.clients) - len(plan.attackers)] and plan.attackers
        assert (exp.vectorised is not None) == vectorise
    torch.testing.assert_close(updates[True], updates[False], rtol=1e-4, atol=1e-5)


def _counting(prepare_round, counts: list[int]):
    """``prepare_round`` that also records how many clients each call prepares."""

    def counting(model, datas, *rest):
        counts.append(len(datas))
        return prepare_round(model, datas, *rest)

    return counting
