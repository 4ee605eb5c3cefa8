"""The engine under damage: non-finite aggregates refused, huge attacker updates, resume that never
loses a row.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import torch
from engine_fixtures import comparable, micro_config

import deepfl.runner
from deepfl.io import read_jsonl
from deepfl.resume import ConfigMismatchError, ResumeError, check_same_config, reconcile_metrics
from deepfl.run import main
from deepfl.runner import Experiment


@pytest.mark.slow
def test_a_non_finite_aggregate_is_refused_and_the_model_kept(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    cfg = micro_config(tmp_path)
    experiment = Experiment(cfg, tmp_path / "run")
    experiment.run(stop_after=1)
    after_pretraining = experiment.global_state.clone()
    honest = deepfl.runner.aggregate

    def overflowing(aggregator, updates, context, client_ids):
        result, accepted = honest(aggregator, updates, context, client_ids)
        return torch.full_like(result, math.inf), accepted

    monkeypatch.setattr(deepfl.runner, "aggregate", overflowing)
    with caplog.at_level(logging.WARNING, logger="deepfl"):
        summary = experiment.run()
    assert torch.equal(experiment.global_state, after_pretraining)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [(row["round"], row.get("refused"), row["accepted"]) for row in rows[1:]] == [
        (2, "non-finite aggregate", []),
        (3, "non-finite aggregate", []),
    ]
    assert (
        rows[1]["acc"] == rows[2]["acc"] == rows[0]["acc"]
        and summary["final"]["acc"] == rows[0]["acc"]
    )
    assert (
        "round 2 refused (non-finite aggregate): the global model of round 1 is kept" in caplog.text
    )


@pytest.mark.slow
def test_krum_run_with_attackers_scaled_by_1e20_finishes(tmp_path: Path, capsys) -> None:
    """End to end (the reported failure: a softmax error at round 2): Krum drops the 1e20 rows."""
    out = tmp_path / "krum"
    assert (
        main(
            [
                "--preset",
                "micro",
                "--device",
                "cpu",
                "--out",
                str(out),
                "--defense",
                "krum",
                "--set",
                "defense.assumed_attackers=1",
                "--set",
                "attack.scale=1e20",
                "--set",
                "data.train_limit=800",
                "--set",
                "data.test_limit=300",
                "--set",
                f'run.cache_dir="{tmp_path / "cache"}"',
                "--set",
                "run.threads=1",
            ]
        )
        == 0
    )
    rows = read_jsonl(out / "metrics.jsonl")
    attack_rows = [row for row in rows if row["attackers"]]
    assert attack_rows and all(
        not set(row["accepted"]) & set(row["attackers"]) for row in attack_rows
    )
    assert all("refused" not in row and 0.0 < row["acc"]["0.0"] <= 1.0 for row in rows)
    assert json.loads(capsys.readouterr().out)["acc"] == rows[-1]["acc"]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A micro run stopped after round 2 (checkpoint at 2), and the rows of the same run done in one
    go.
    """
    base = tmp_path_factory.mktemp("stopped")
    cfg = micro_config(base)
    Experiment(cfg, base / "full").run()
    assert Experiment(cfg, base / "stopped").run(stop_after=2) is None
    return base / "stopped", comparable(read_jsonl(base / "full" / "metrics.jsonl"))


def _copy(stopped: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(stopped, tmp_path / "run"))


@pytest.mark.slow
def test_metrics_cut_mid_row_are_restored_from_the_checkpoint(
    stopped_run, tmp_path: Path, caplog
) -> None:
    run_dir = _copy(stopped_run[0], tmp_path)
    text = (run_dir / "metrics.jsonl").read_text()
    (run_dir / "metrics.jsonl").write_text(
        text[: len(text.splitlines()[0]) + 30]
    )  # row 1, then half of row 2
    (run_dir / ".checkpoint.pt.x1y2.tmp").write_bytes(b"killed mid-write")
    with caplog.at_level(logging.WARNING, logger="deepfl"):
        assert main(["--resume", str(run_dir)]) == 0
    assert comparable(read_jsonl(run_dir / "metrics.jsonl")) == stopped_run[1]
    assert "rounds [2] missing" in caplog.text and not list(run_dir.glob(".*.tmp"))


@pytest.mark.slow
def test_resume_refuses_an_edited_config(stopped_run, tmp_path: Path, capsys) -> None:
    run_dir = _copy(stopped_run[0], tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    config["seed"] = 7
    (run_dir / "config.json").write_text(json.dumps(config))
    assert main(["--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "seed (checkpoint 0, config.json 7)" in err
    assert [row["round"] for row in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2]  # untouched


def test_resume_of_a_damaged_checkpoint_is_one_line(stopped_run, tmp_path: Path, capsys) -> None:
    run_dir = _copy(stopped_run[0], tmp_path)
    raw = bytearray((run_dir / "checkpoint.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (run_dir / "checkpoint.pt").write_bytes(bytes(raw))
    assert main(["--resume", str(run_dir)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {run_dir / 'checkpoint.pt'} is damaged: "
        "its content does not match its SHA-256 header"
    ]


def _rows(*rounds: int) -> list[dict]:
    return [{"round": r, "acc": {"0.0": r / 10}} for r in rounds]


def test_reconcile_metrics() -> None:
    assert reconcile_metrics(_rows(1, 2, 3, 4), _rows(1, 2, 3), 3, "m") == _rows(
        1, 2, 3
    )  # rows past R dropped
    assert reconcile_metrics(_rows(1, 4), _rows(1, 2, 3), 3, "m") == _rows(1, 2, 3)  # gap repaired
    assert reconcile_metrics(_rows(1, 2, 3), None, 3, "m") == _rows(1, 2, 3)  # older checkpoint
    with pytest.raises(
        ResumeError, match=r"m does not hold rounds 1..3 in order \(found \[1, 2, 2, 3\]\)"
    ):
        reconcile_metrics(_rows(1, 2, 2, 3), None, 3, "m")
    with pytest.raises(ResumeError, match="copy of the metrics does not hold rounds 1..3"):
        reconcile_metrics(_rows(1, 2, 3), _rows(1, 3), 3, "m")


def test_check_same_config_names_the_changed_keys() -> None:
    stored = {"seed": 0, "run": {"rounds": 5}}
    state = {"config_digest": "a", "seed": 0, "config_json": json.dumps(stored)}
    check_same_config(state, stored, "a", "r")
    with pytest.raises(ConfigMismatchError, match=r"run.rounds \(checkpoint 5, config.json 6\)"):
        check_same_config(state, {"seed": 0, "run": {"rounds": 6}}, "b", "r")


def test_check_same_config_accepts_an_older_config_that_reads_as_today(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A checkpoint written before a field was added or a key renamed still resumes, when the
    current version reads its stored config as config.json; any other difference is refused."""
    old = {"seed": 0, "run": {"rounds": 5}, "defense": {"num_attackers": 1}}
    state = {"config_digest": "a", "seed": 0, "config_json": json.dumps(old)}
    today = {"seed": 0, "run": {"rounds": 5, "keep": []}, "defense": {"assumed_attackers": 1}}

    def upgrade(stored: dict) -> dict:
        defense = {"assumed_attackers": stored["defense"]["num_attackers"]}
        return {"seed": 0, "run": {**stored["run"], "keep": []}, "defense": defense}

    with caplog.at_level("WARNING", logger="deepfl"):
        check_same_config(state, today, "b", "r", upgrade)
    assert "written by an older fliplab" in caplog.text
    changed = {**today, "run": {"rounds": 6, "keep": []}}
    with pytest.raises(ConfigMismatchError, match=r"run.rounds \(checkpoint 5, config.json 6\)"):
        check_same_config(state, changed, "b", "r", upgrade)
    with pytest.raises(ConfigMismatchError, match="defense.assumed_attackers"):
        check_same_config(state, today, "b", "r", lambda stored: None)


def test_read_as_today_maps_the_renamed_defense_key() -> None:
    from deepfl.config import ExperimentConfig
    from deepfl.runner import read_as_today

    stored = ExperimentConfig().to_dict()
    stored["defense"] = {
        **{k: v for k, v in stored["defense"].items() if k != "assumed_attackers"},
        "num_attackers": 1,
    }
    del stored["run"]["keep_checkpoints"]
    today = read_as_today(stored)
    assert today is not None and today["defense"]["assumed_attackers"] == 1
    assert today["run"]["keep_checkpoints"] == []
    assert read_as_today({"defense": {"no_such_key": 1}}) is None
