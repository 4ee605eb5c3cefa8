"""deepfl.flip.run_state: what the benign clients of a finished FLIP run hardened."""

from __future__ import annotations

import numpy as np
import pytest
from engine_fixtures import single_thread
from test_engine_flip import flip_config

from deepfl.flip.analysis import main as analysis_main
from deepfl.flip.run_state import _touches_target, run_state_report
from deepfl.runner import Experiment


def test_a_pair_touches_the_target_through_either_direction_it_hardens() -> None:
    assert _touches_target(np.array([[3, 2, 0]]), target=2)
    assert _touches_target(np.array([[2, 3, 1]]), target=2)  # symmetric: 3 -> 2 hardened too
    assert not _touches_target(np.array([[2, 3, 0], [4, 5, 1]]), target=2)


@pytest.mark.slow
def test_report_of_a_micro_flip_run_is_consistent(tmp_path) -> None:
    run_dir = tmp_path / "run"
    with single_thread():
        Experiment(flip_config(tmp_path, "paper", run={"rounds": 3}), run_dir).run()
    report = run_state_report(run_dir)
    assert report["round"] == 3 and report["benign_clients"] == 6 - 2
    never = report["selections"]["never"]
    assert report["warmed_up_clients"] == report["benign_clients"] - never >= 1
    assert 0 <= report["last_pairs_touching_target"] <= report["warmed_up_clients"]
    triggers = report["last_pair_triggers"]
    assert triggers["to_target"]["triggers"] + triggers["to_other"]["triggers"] >= 1
    universal = report["universal_toward_target"]
    assert universal["triggers"] <= report["warmed_up_clients"]
    assert 0 <= universal["clients_flagging_target"] <= report["warmed_up_clients"]
    out = tmp_path / "out"
    assert analysis_main(["run-state", str(run_dir), "--out", str(out), "--name", "rs"]) == 0
    assert (out / "rs.json").exists() and "| round |" in (out / "rs.md").read_text()
