"""Vectorised local training (deepfl.vectorised) against the sequential reference (LocalTrainer)."""

from __future__ import annotations

import functools
import logging

import pytest
import torch
from engine_fixtures import comparable, micro_config, single_thread

from deepfl.client import LocalData, LocalTrainer, trigger_on_device
from deepfl.config import ConfigError, TrainConfig, parse_override, resolve
from deepfl.flat import FlatState
from deepfl.io import read_jsonl
from deepfl.models import build_model
from deepfl.runner import Experiment
from deepfl.vectorised import ClientTask, NotVectorisable, VectorisedTrainer, round_groups
from fldata.triggers import dba_trigger, poison_batch

# Local sizes with unequal step counts and last batches (batch 16): 40 = 16+16+8, 23 = 16+7,
# 64 = 4x16, 37 = 16+16+5; the two 3-step clients sandwich the 4-step one after sorting, so
# steps with a short batch split the population into non-contiguous groups.
SIZES = (40, 23, 64, 37)
SHAPES = {"cnn": (1, 28, 28), "linear": (1, 28, 28), "resnet18": (3, 32, 32)}


def population(name: str, dtype: torch.dtype) -> tuple[torch.nn.Module, list[LocalData]]:
    """A freshly initialised model and a few clients of random images with learnable labels."""
    generator = torch.Generator().manual_seed(7)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model(name, SHAPES[name], 10, resnet_width=8).to(dtype)
    clients = []
    for size in SIZES:
        images = torch.rand(size, *SHAPES[name], generator=generator, dtype=dtype)
        clients.append(LocalData(images, (images.mean(dim=(1, 2, 3)) * 40).long() % 10))
    return model, clients


def poison_for(name: str, dtype: torch.dtype, piece: int):
    trigger = trigger_on_device(dba_trigger(SHAPES[name], pieces=piece), torch.device("cpu"), dtype)
    return functools.partial(poison_batch, trigger=trigger, target=2, num_poison=5)


def both_trainers(
    name: str, dtype: torch.dtype, settings: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-client updates (k, d) from the sequential LocalTrainer and from VectorisedTrainer;
    clients 0 and 2 are poisoned with their own DBA piece, each client has its own permutation
    generator."""
    model, clients = population(name, dtype)
    flat = FlatState(model)
    start = flat.get()
    augments = [poison_for(name, dtype, 0), None, poison_for(name, dtype, 1), None]
    sequential = []
    for index, (data, augment) in enumerate(zip(clients, augments, strict=True)):
        flat.set(start)
        LocalTrainer(settings).train(
            model, data, augment=augment, generator=torch.Generator().manual_seed(index)
        )
        sequential.append(flat.get() - start)
    tasks = [
        ClientTask(data, torch.Generator().manual_seed(index), augment)
        for index, (data, augment) in enumerate(zip(clients, augments, strict=True))
    ]
    vectorised = VectorisedTrainer(model).train(start, tasks, settings) - start
    return torch.stack(sequential), vectorised


def relative(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-client ||a_i - b_i|| / ||b_i||."""
    return (a - b).norm(dim=1) / b.norm(dim=1)


SETTINGS = TrainConfig(lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=16, epochs=2)


@pytest.mark.parametrize("name", ["cnn", "linear", "resnet18"])
@pytest.mark.slow
def test_vectorised_training_is_sequential_training_in_float64(name: str) -> None:
    """Same batches, same poisoning, same SGD (momentum, weight decay), per-client BatchNorm
    statistics: in float64 the two trainers agree to rounding over 2 epochs of uneven clients."""
    with single_thread():
        sequential, vectorised = both_trainers(name, torch.float64, SETTINGS)
    assert sequential.norm(dim=1).gt(0).all()
    assert relative(vectorised, sequential).max() < 1e-10


@pytest.mark.parametrize("name", ["cnn", "linear"])
@pytest.mark.slow
def test_vectorised_training_matches_sequential_in_float32(name: str) -> None:
    with single_thread():
        sequential, vectorised = both_trainers(name, torch.float32, SETTINGS)
    assert relative(vectorised, sequential).max() < 1e-4


@pytest.mark.slow
def test_resnet_float32_agrees_on_one_step_and_its_longer_runs_are_chaotic() -> None:
    """ResNet-18 in float32 over several steps cannot agree to 1e-4 with ANY reordering of the sums:
    the sequential trainer itself moves by more than that when its start is perturbed by 1e-7
    (BatchNorm's backward cancels). One step per client (batch >= local size) does agree."""
    one_step = TrainConfig(lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=64, epochs=1)
    with single_thread():
        sequential, vectorised = both_trainers("resnet18", torch.float32, one_step)
        assert relative(vectorised, sequential).max() < 1e-4
        model, clients = population("resnet18", torch.float32)
        flat = FlatState(model)
        start = flat.get()
        runs = []
        for perturbation in (0.0, 1e-7):
            flat.set(start * (1 + perturbation))
            LocalTrainer(SETTINGS).train(
                model, clients[2], generator=torch.Generator().manual_seed(0)
            )
            runs.append(flat.get() - start * (1 + perturbation))
    assert relative(runs[1][None], runs[0][None]).item() > 1e-4


def test_plain_sgd_without_momentum_or_weight_decay() -> None:
    plain = TrainConfig(lr=0.1, momentum=0.0, weight_decay=0.0, batch_size=16, epochs=1)
    with single_thread():
        sequential, vectorised = both_trainers("linear", torch.float64, plain)
    assert relative(vectorised, sequential).max() < 1e-12


def test_models_that_cannot_be_vectorised_are_refused() -> None:
    with pytest.raises(NotVectorisable, match="dropout"):
        VectorisedTrainer(
            torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(), torch.nn.Linear(4, 2))
        )
    with pytest.raises(NotVectorisable, match="momentum=None"):
        VectorisedTrainer(torch.nn.Sequential(torch.nn.BatchNorm1d(4, momentum=None)))


@pytest.mark.slow
def test_engine_falls_back_to_sequential_when_the_batched_step_fails(
    tmp_path, monkeypatch, caplog
) -> None:
    """A batching rule missing on the device shows up in the probe at start-up, not mid-run."""

    def missing_rule(self, *args):
        raise RuntimeError("Batching rule not implemented for aten::something")

    monkeypatch.setattr(VectorisedTrainer, "_loss", missing_rule)
    with caplog.at_level(logging.WARNING, logger="deepfl"):
        experiment = Experiment(micro_config(tmp_path, run={"vectorise": True}), tmp_path / "run")
    assert experiment.vectorised is None
    assert (
        "Batching rule not implemented" in caplog.text
        and "training clients sequentially" in caplog.text
    )
    experiment.run_round(2)


@pytest.mark.parametrize("model", ["cnn", "linear"])
@pytest.mark.slow
def test_engine_round_updates_agree_and_are_deterministic(tmp_path, model: str) -> None:
    """One attack round (attacker: 2 poison epochs, benign: 1 epoch) through
    Experiment._train_clients.
    """
    updates = {}
    with single_thread():
        for vectorise, tag in ((False, "seq"), (True, "vec"), (True, "vec-again")):
            cfg = micro_config(
                tmp_path, model={"name": model}, attack={"epochs": 2}, run={"vectorise": vectorise}
            )
            experiment = Experiment(cfg, tmp_path / tag)
            assert (experiment.vectorised is not None) == vectorise
            updates[tag] = experiment._train_clients(experiment.schedule.plan(2))
    assert relative(updates["vec"], updates["seq"]).max() < 1e-4
    assert torch.equal(updates["vec"], updates["vec-again"])


@pytest.mark.slow
def test_flip_clients_and_adaptive_attackers_are_left_to_the_sequential_path(tmp_path) -> None:
    flip = Experiment(
        micro_config(tmp_path, defense={"client": "flip"}, run={"vectorise": True}),
        tmp_path / "flip",
    )
    plan = flip.schedule.plan(2)
    [attackers] = round_groups(flip, plan)
    assert [plan.clients[row] for row in attackers.rows] == list(plan.attackers)
    assert (
        attackers.settings.epochs == flip.cfg.attack.epochs
        and attackers.scale == flip.cfg.attack.scale
    )
    pretrain = round_groups(flip, flip.schedule.plan(1))
    assert len(pretrain) == 1 and len(pretrain[0].rows) == flip.cfg.server.clients_per_round
    # the adaptive attacker needs FLIP clients (it inverts with their config): nothing of an attack
    # round is
    # vectorisable then, pre-training still is
    adaptive = Experiment(
        micro_config(
            tmp_path,
            attack={"behaviour": "adaptive"},
            defense={"client": "flip"},
            run={"vectorise": True},
        ),
        tmp_path / "adaptive",
    )
    assert round_groups(adaptive, plan) == []
    assert (
        len(round_groups(adaptive, adaptive.schedule.plan(1))[0].rows)
        == adaptive.cfg.server.clients_per_round
    )


@pytest.mark.slow
def test_micro_run_metrics_are_close_with_and_without_vectorisation(tmp_path) -> None:
    rows = {}
    with single_thread():
        for vectorise in (False, True):
            cfg = micro_config(tmp_path / str(vectorise), run={"vectorise": vectorise})
            summary = Experiment(cfg, tmp_path / f"run-{vectorise}").run()
            rows[vectorise] = summary["final"]
    for metric in ("acc", "asr"):
        for tau, value in rows[False][metric].items():
            assert rows[True][metric][tau] == pytest.approx(value, abs=0.02), (metric, tau)


def test_vectorise_is_a_bool_setting() -> None:
    assert resolve({}).run.vectorise is False  # off by default: slower than sequential on CPU cores
    assert resolve(parse_override("run.vectorise=true")).run.vectorise is True
    with pytest.raises(ConfigError, match="run.vectorise"):
        resolve(parse_override("run.vectorise=yes"))


@pytest.mark.slow
def test_clients_may_start_from_different_states() -> None:
    """(k, d) starts, one per client (e.g. the global models of several seeds), train as one
    population.
    """
    model, clients = population("cnn", torch.float64)
    flat = FlatState(model)
    starts = flat.get() + 0.01 * torch.randn(
        len(clients),
        flat.layout.size,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(3),
    )
    trainer = VectorisedTrainer(model)
    with single_thread():
        together = trainer.train(
            starts,
            [ClientTask(c, torch.Generator().manual_seed(i)) for i, c in enumerate(clients)],
            SETTINGS,
        )
        alone = [
            trainer.train(starts[i], [ClientTask(c, torch.Generator().manual_seed(i))], SETTINGS)[0]
            for i, c in enumerate(clients)
        ]
    assert relative(together - starts, torch.stack(alone) - starts).max() < 1e-10


@pytest.mark.slow
def test_vectorised_run_resumes_exactly(tmp_path) -> None:
    cfg = micro_config(tmp_path, run={"vectorise": True})
    with single_thread():
        full = Experiment(cfg, tmp_path / "full").run()
        assert Experiment(cfg, tmp_path / "killed").run(stop_after=2) is None
        resumed = Experiment(cfg, tmp_path / "killed").run()
    assert resumed is not None and resumed["final"] == full["final"]
    assert comparable(read_jsonl(tmp_path / "killed" / "metrics.jsonl")) == comparable(
        read_jsonl(tmp_path / "full" / "metrics.jsonl")
    )
