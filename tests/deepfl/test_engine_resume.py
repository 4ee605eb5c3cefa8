"""Determinism, resume-after-kill, the pre-training cache and the run directory (deepfl.runner,
deepfl.run).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from engine_fixtures import comparable, micro_config

from deepfl.io import append_jsonl, read_jsonl
from deepfl.run import main
from deepfl.runner import Experiment


@pytest.mark.slow
def test_same_seed_same_metrics_and_other_seed_differs(tmp_path) -> None:
    cfg = micro_config(
        tmp_path,
        run={"cache_dir": str(tmp_path / "no-cache"), "pretrain_rounds": 0, "rounds": 2},
        attack={"start_round": 1},
    )
    first = Experiment(cfg, tmp_path / "a").run()
    second = Experiment(cfg, tmp_path / "b").run()
    assert comparable(read_jsonl(tmp_path / "a" / "metrics.jsonl")) == comparable(
        read_jsonl(tmp_path / "b" / "metrics.jsonl")
    )
    assert first["final"] == second["final"]
    other = Experiment(dataclasses.replace(cfg, seed=1), tmp_path / "c").run()
    assert other["final"]["acc"] != first["final"]["acc"]


@pytest.mark.slow
def test_killed_and_resumed_run_matches_an_uninterrupted_one(tmp_path) -> None:
    cfg = micro_config(tmp_path)
    full = Experiment(cfg, tmp_path / "full").run()
    stopped = Experiment(cfg, tmp_path / "killed")
    assert stopped.run(stop_after=2) is None
    # A kill between the metrics line of round 3 and its checkpoint leaves a stale line behind.
    append_jsonl(
        tmp_path / "killed" / "metrics.jsonl",
        {"round": 3, "phase": "attack", "stale": True, "seconds": {}},
    )
    assert main(["--resume", str(tmp_path / "killed")]) == 0
    resumed = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert resumed["final"] == full["final"]
    rows = read_jsonl(tmp_path / "killed" / "metrics.jsonl")
    assert [row["round"] for row in rows] == [1, 2, 3]
    assert comparable(rows) == comparable(read_jsonl(tmp_path / "full" / "metrics.jsonl"))


@pytest.mark.slow
def test_resume_takes_the_commands_threads_and_keeps_the_stored_config(tmp_path) -> None:
    """Threads say how a run executes: ``--resume --threads N`` runs with N threads although the
    folder was started with others, and the stored config (and so the config digest the
    checkpoint is checked against) is left as it was; a --set that would change it is refused."""
    import torch

    run_dir = tmp_path / "run"
    assert Experiment(micro_config(tmp_path, run={"threads": 2}), run_dir).run(stop_after=1) is None
    stored = (run_dir / "config.json").read_text()
    before = torch.get_num_threads()
    try:
        assert main(["--resume", str(run_dir), "--threads", "1", "--stop-after", "2"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert (run_dir / "config.json").read_text() == stored
    assert main(["--resume", str(run_dir), "--set", "run.threads=1"]) == 2


@pytest.mark.slow
def test_pretrained_model_is_cached_and_shared_across_defenses(tmp_path) -> None:
    first = Experiment(micro_config(tmp_path, run={"rounds": 2}), tmp_path / "fedavg").run()
    second = Experiment(
        micro_config(tmp_path, run={"rounds": 2}, defense={"server": "median"}), tmp_path / "median"
    ).run()
    assert not first["pretrain_cache"]["hit"] and second["pretrain_cache"]["hit"]
    assert first["pretrain_cache"]["key"] == second["pretrain_cache"]["key"]
    pre = [
        comparable([row])[0]
        for row in read_jsonl(tmp_path / "median" / "metrics.jsonl")
        if row["phase"] == "pretrain"
    ]
    assert pre == [
        comparable([row])[0]
        for row in read_jsonl(tmp_path / "fedavg" / "metrics.jsonl")
        if row["phase"] == "pretrain"
    ]
    changed = Experiment(micro_config(tmp_path, benign={"lr": 0.05}), tmp_path / "other")
    assert changed.pretrain_key() != first["pretrain_cache"]["key"]


@pytest.mark.slow
def test_run_directory_contents(tmp_path) -> None:
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "--preset",
                "micro",
                "--device",
                "cpu",
                "--out",
                str(run_dir),
                "--set",
                f'run.cache_dir="{tmp_path}"',
                "--set",
                "data.train_limit=800",
                "--set",
                "data.test_limit=300",
                "--set",
                "run.rounds=2",
                "--set",
                "run.progress=false",
            ]
        )
        == 0
    )
    config = json.loads((run_dir / "config.json").read_text())
    assert config["run"]["rounds"] == 2 and config["data"]["train_limit"] == 800
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert {
        "round",
        "phase",
        "acc",
        "asr",
        "per_class_acc",
        "attackers",
        "accepted",
        "seconds",
    } <= set(rows[-1])
    assert rows[-1]["phase"] == "attack" and rows[-1]["attackers"]
    confidences = np.load(run_dir / "confidences.npz")
    assert confidences["clean_confidence"].shape == (300,)
    assert np.all(confidences["backdoor_confidence"] >= 1 / 10 - 1e-9)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0.0 <= summary["final"]["rejection_auc"] <= 1.0
    assert (run_dir / "checkpoint.pt").exists()
    assert main(["--preset", "micro", "--out", str(run_dir)]) == 2  # refuses to overwrite a run
