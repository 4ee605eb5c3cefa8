"""Seeds batched together (deepfl.population) against each seed's run alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from engine_fixtures import comparable, micro_config, single_thread

from deepfl.config import from_dict
from deepfl.io import read_jsonl
from deepfl.population import (
    SeedPopulation,
    check_same_but_seed,
    population_dirs,
    train_population,
)
from deepfl.run import main
from deepfl.runner import Experiment


def relative(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-12)


def seeded(tmp_path: Path, seed: int, **run: object):
    cfg = micro_config(tmp_path, attack={"epochs": 2}, run={"vectorise": True, **run})
    return from_dict({**cfg.to_dict(), "seed": seed})


@pytest.mark.slow
def test_one_round_of_a_population_is_each_seeds_round(tmp_path: Path) -> None:
    """Round 2 (attack): the batched population's per-client updates against each seed's own
    vectorised round and its sequential round, 1e-4 relative in float32."""
    with single_thread():
        runs = [Experiment(seeded(tmp_path, seed), tmp_path / f"p{seed}") for seed in (0, 1, 2)]
        plans = [run.schedule.plan(2) for run in runs]
        runs[1].global_state = runs[1].global_state * 1.01  # the seeds' starts really differ
        trained, seconds = train_population(runs[0].vectorised, runs, plans)
        for run, plan, (updates, done) in zip(runs, plans, trained, strict=True):
            assert done == set(range(len(plan.clients))) and seconds > 0
            alone = run._train_clients(plan)
            sequential = run.vectorised
            run.vectorised = None
            reference = run._train_clients(plan)
            run.vectorised = sequential
            assert relative(updates, alone).max() < 1e-4
            assert relative(updates, reference).max() < 1e-4


@pytest.mark.slow
def test_a_population_run_matches_the_seeds_run_alone(tmp_path: Path) -> None:
    with single_thread():
        together = SeedPopulation(
            [Experiment(seeded(tmp_path, seed), tmp_path / f"p{seed}") for seed in (0, 1)]
        ).run()
        for seed, summary in zip((0, 1), together, strict=True):
            alone = Experiment(seeded(tmp_path, seed), tmp_path / f"a{seed}").run()
            assert summary is not None and alone is not None
            for metric in ("acc", "asr"):
                for tau, value in alone["final"][metric].items():
                    assert summary["final"][metric][tau] == pytest.approx(value, abs=0.01)
            rows = read_jsonl(tmp_path / f"p{seed}" / "metrics.jsonl")
            assert [row["round"] for row in rows] == [1, 2, 3]
            assert all(row["seconds"]["train"] > 0 for row in rows)
            assert (
                rows[-1]["clients"]
                == read_jsonl(tmp_path / f"a{seed}" / "metrics.jsonl")[-1]["clients"]
            )


@pytest.mark.slow
def test_runs_stopped_at_different_rounds_catch_up_and_finish(tmp_path: Path) -> None:
    with single_thread():
        Experiment(seeded(tmp_path, 0), tmp_path / "s0").run(stop_after=1)
        Experiment(seeded(tmp_path, 1), tmp_path / "s1").run(stop_after=2)
        assert main(["--resume", str(tmp_path / "s0"), str(tmp_path / "s1")]) == 0
        straight = SeedPopulation(
            [Experiment(seeded(tmp_path, seed), tmp_path / f"x{seed}") for seed in (0, 1)]
        ).run()
    for seed, summary in zip((0, 1), straight, strict=True):
        resumed = read_jsonl(tmp_path / f"s{seed}" / "metrics.jsonl")
        assert [row["round"] for row in resumed] == [1, 2, 3]
        final = json.loads((tmp_path / f"s{seed}" / "summary.json").read_text())["final"]
        assert summary is not None
        assert final["acc"] == pytest.approx(summary["final"]["acc"], abs=0.01)
        assert (
            comparable(resumed)[0]
            == comparable(read_jsonl(tmp_path / f"x{seed}" / "metrics.jsonl"))[0]
        )


def test_a_population_differs_only_in_the_seed(tmp_path: Path) -> None:
    check_same_but_seed([seeded(tmp_path, 0), seeded(tmp_path, 1)])
    with pytest.raises(ValueError, match="distinct seeds"):
        check_same_but_seed([seeded(tmp_path, 0), seeded(tmp_path, 0)])
    other = from_dict({**seeded(tmp_path, 1).to_dict(), "device": "cpu"})
    rounds = from_dict({**other.to_dict(), "run": {**other.to_dict()["run"], "rounds": 4}})
    with pytest.raises(ValueError, match="differs from seed 0 in run"):
        check_same_but_seed([seeded(tmp_path, 0), rounds])


def test_population_folders_need_a_seed_placeholder() -> None:
    assert population_dirs("runs/x-s{seed}", [0, 2]) == [Path("runs/x-s0"), Path("runs/x-s2")]
    assert population_dirs("runs/one", [3]) == [Path("runs/one")]
    with pytest.raises(ValueError, match="must contain"):
        population_dirs("runs/x", [0, 1])


def test_cli_refuses_bad_seed_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--preset", "micro", "--device", "cpu"]
    assert main([*base, "--seeds", "0", "1", "--out", str(tmp_path / "x")]) == 2
    assert "must contain {seed}" in capsys.readouterr().err
    assert main([*base, "--seed", "0", "--seeds", "0", "1"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "a"), str(tmp_path / "b"), "--seeds", "1"]) == 2
