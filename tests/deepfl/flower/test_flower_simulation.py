"""``python -m deepfl.flower`` on Flower's Ray simulation engine: same run as the native engine.

One subprocess (Ray stays out of the test process), 2 CPUs, a 128 MiB object store, a hard timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from flower_fixtures import TINY_FLIP, assert_same_run, require

require("flwr")
require("ray")

from engine_fixtures import single_thread

from deepfl.attacks import AttackSchedule
from deepfl.flower.__main__ import build_flower_parser
from deepfl.reproduce.compact import compact_run
from deepfl.run import config_from_args
from deepfl.runner import Experiment
from figures.__main__ import render_deep

REPO = Path(__file__).resolve().parents[3]
SIMULATION_TIMEOUT_S = 300


def _micro_flip_args(tmp_path: Path) -> list[str]:
    """The README's command, shrunk to seconds: tiny FLIP, 3 rounds of 3 clients (1 attacker), one
    thread each.
    """
    return [
        "--preset",
        "micro",
        "--attack",
        "continuous",
        "--client-defense",
        "flip",
        "--device",
        "cpu",
        "--set",
        f"defense.client_params={json.dumps(TINY_FLIP)}",
        "--set",
        "data.train_limit=800",
        "--set",
        "data.test_limit=300",
        "--set",
        "server.clients_per_round=3",
        "--set",
        "attack.per_round=1",
        "--set",
        "run.threads=1",
        "--set",
        f"run.cache_dir={tmp_path / 'cache'}",
    ]


@pytest.mark.slow
def test_simulation_cli_reproduces_the_native_run_and_figures_read_it(tmp_path: Path) -> None:
    args = _micro_flip_args(tmp_path)
    cfg = config_from_args(build_flower_parser().parse_args(args))
    schedule = AttackSchedule(cfg)
    benign = [
        set(plan.clients) - set(plan.attackers)
        for plan in map(schedule.plan, range(2, cfg.run.rounds + 1))
    ]
    assert set.intersection(
        *benign
    )  # a FLIP client whose cache must come back from its node's context.state
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable,
        "-m",
        "deepfl.flower",
        *args,
        "--out",
        str(tmp_path / "flower"),
        "--num-cpus",
        "2",
        "--object-store-mib",
        "128",
    ]
    done = subprocess.run(
        command,
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SIMULATION_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["run_dir"] == str(tmp_path / "flower")
    with single_thread():
        Experiment(cfg, tmp_path / "native").run()
    assert json.loads((tmp_path / "flower" / "config.json").read_text()) == cfg.to_dict()
    assert_same_run(tmp_path / "flower", tmp_path / "native")
    written = render_deep([tmp_path / "flower", tmp_path / "native"], tmp_path / "figures")
    table = next(path for path in written if path.suffix == ".md").read_text()
    assert "flower" in table and "native" in table
    flower_cell, native_cell = (
        compact_run(tmp_path / name, {"id": "micro"}) for name in ("flower", "native")
    )
    for key in (
        "config_digest",
        "rounds",
        "acc",
        "asr",
        "attackers_kept",
        "final",
        "attacker_ids",
        "auc",
    ):
        assert flower_cell[key] == native_cell[key], (
            key
        )  # the reproduction driver's record of the run


def test_simulation_cli_refuses_an_existing_run_directory(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "config.json").write_text("{}")
    from deepfl.flower.__main__ import main

    assert main(["--preset", "micro", "--out", str(tmp_path / "taken")]) == 2
