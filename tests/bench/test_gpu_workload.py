"""The GPU window's script (bench/gpu_workload.py): its time limits, its grid commands and its
bookkeeping of result cells, checked on the CPU."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workload() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("gpu_workload", ROOT / "bench/gpu_workload.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_workload"] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_workload"]


def test_a_step_past_its_limit_is_stopped_with_its_children(
    workload: ModuleType, tmp_path: Path
) -> None:
    # a parent that starts a child and both sleep: the whole process group must go
    script = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
        "'import time; time.sleep(60)']); print('started', flush=True); time.sleep(60)"
    )
    started = time.perf_counter()
    outcome = workload.run_step(
        "sleeper", [sys.executable, "-c", script], 2.0, tmp_path, dict(os.environ)
    )
    assert outcome.returncode is None and time.perf_counter() - started < 30
    assert outcome.last_line == "started"
    assert (tmp_path / "logs" / "sleeper.log").read_text().strip() == "started"


def test_a_finished_step_reports_its_code_and_last_line(
    workload: ModuleType, tmp_path: Path
) -> None:
    command = [sys.executable, "-c", "print('a'); print('speed-up: 1.00x'); raise SystemExit(3)"]
    outcome = workload.run_step("quick", command, 60.0, tmp_path, dict(os.environ))
    assert outcome.returncode == 3 and outcome.last_line == "speed-up: 1.00x"


@pytest.mark.parametrize("micro", [False, True])
def test_the_grid_commands_select_real_cells(
    workload: ModuleType, tmp_path: Path, micro: bool
) -> None:
    plan = workload.Plan.for_window("cuda", micro)
    for rows in (workload.FLIP_ROWS, workload.BASELINE_ROWS):
        command = workload.driver_command(plan, rows, plan.seeds_grid, 2, tmp_path, tmp_path / "r")
        listed = subprocess.run(
            command + ["--list"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout
        count = int(listed.strip().splitlines()[-1].split()[1])
        # paper scale: FLIP's 3 modes x 3 seeds, 12 baselines x 3 seeds; ci keeps 2 baselines
        expected = {
            (False, "flip"): 9,
            (False, "fedavg"): 36,
            (True, "flip"): 0,
            (True, "fedavg"): 4,
        }
        assert count == expected[(micro, rows[0])], listed


def test_committed_cells_are_copied_in_and_only_new_ones_reported(
    workload: ModuleType, tmp_path: Path
) -> None:
    committed = sorted((ROOT / "results" / "paper" / "cells").rglob("*.json"))
    assert workload.seed_results(tmp_path, "paper") == len(committed) > 0
    assert workload.seed_results(tmp_path, "paper") == 0  # nothing twice
    assert workload.new_cells(tmp_path, "paper") == []
    new = tmp_path / "results/paper/cells/mnist/continuous/krum/s7.json"
    new.parent.mkdir(parents=True, exist_ok=True)
    new.write_text(json.dumps({"seconds": {"train": 1.25, "evaluate": 0.5}}))
    assert workload.new_cells(tmp_path, "paper") == ["mnist/continuous/krum/s7.json"]
    assert workload._cell_seconds(tmp_path, "paper", "mnist/continuous/krum/s7.json") == 1.8


def test_what_comes_back_is_flat_and_unpacks_into_results(
    workload: ModuleType, tmp_path: Path
) -> None:
    work, out, results = tmp_path / "work", tmp_path / "out", tmp_path / "results"
    (work / "logs").mkdir(parents=True)
    out.mkdir()
    (work / "logs" / "grid.log").write_text("done\n")
    (work / "device.json").write_text("{}")
    new = work / "results/paper/cells/mnist/continuous/krum/s7.json"
    new.parent.mkdir(parents=True)
    new.write_text('{"seconds": {}}')
    outcome = workload.StepOutcome("grid", [], 0, 1.0, 2.0, "1 new cells")
    workload.report(work, out, "paper", [outcome])
    # at most 8 files, none in a folder: the device tool's limits on what comes back
    assert sorted(p.name for p in out.iterdir()) == [
        "cells.tar.gz",
        "device.json",
        "gpu_workload.json",
        "logs.tar.gz",
    ]
    committed = results / "paper/cells/mnist/continuous/rfa/s0.json"
    committed.parent.mkdir(parents=True)
    committed.write_text("committed")
    assert workload.unpack(out, results) == 0
    assert (results / "paper/cells/mnist/continuous/krum/s7.json").read_text() == new.read_text()
    assert committed.read_text() == "committed"
    assert workload.unpack(out, results) == 0  # a second time takes nothing and breaks nothing


def test_unpack_refuses_members_outside_the_cells(workload: ModuleType, tmp_path: Path) -> None:
    import io
    import tarfile

    with tarfile.open(tmp_path / "cells.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("paper/cells/../../../escape.json")
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match="unexpected member"):
        workload.unpack(tmp_path, tmp_path / "results")
    assert not (tmp_path.parent / "escape.json").exists()
