"""deepfl.rundir: one live run per folder (OS lock), a killed run's lock taken over, leftover temp
files removed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepfl.io import read_jsonl
from deepfl.rundir import LOCK_NAME, RunDirInUse, hold_run_dir, remove_leftover_temps

REPO = Path(__file__).resolve().parents[2]
HOLD = (
    "import sys, time; from deepfl.rundir import hold_run_dir\nwith hold_run_dir(sys.argv[1]):\n  "
    "  print('held', flush=True); time.sleep(60)"
)


def _env(tmp_path: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "PYTHONPATH": path,
        "FLIPLAB_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }


def test_a_folder_held_by_another_process_is_refused_naming_its_pid(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirInUse, match=rf"run is in use by pid {holder.pid}$"):
            with hold_run_dir(tmp_path / "run"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with hold_run_dir(tmp_path / "run"):  # the kernel released the killed holder's lock
        assert (tmp_path / "run" / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_a_stale_lock_file_is_taken_over_and_the_lock_is_reentrant(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text(
        "999999999\n"
    )  # left by a killed run: the file stays, its lock does not
    with hold_run_dir(folder):
        with hold_run_dir(folder):  # the engine re-enters what deepfl.run already holds
            pass
        assert (folder / LOCK_NAME).read_text() == f"{os.getpid()}\n"


def test_leftover_temp_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".checkpoint.pt.abc123.tmp").write_bytes(b"half")
    (tmp_path / "metrics.jsonl").write_text("")
    assert [path.name for path in remove_leftover_temps(tmp_path)] == [".checkpoint.pt.abc123.tmp"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.jsonl"]


@pytest.mark.slow
def test_two_runs_started_at_once_on_one_folder_exactly_one_runs(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    argv = [
        sys.executable,
        "-m",
        "deepfl.run",
        "--preset",
        "micro",
        "--device",
        "cpu",
        "--out",
        str(run_dir),
        "--set",
        "data.train_limit=800",
        "--set",
        "data.test_limit=300",
        "--set",
        "run.rounds=2",
        "--set",
        "run.threads=1",
    ]
    runs = [
        subprocess.Popen(
            argv,
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [(run.pid, *run.communicate(timeout=300)) for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 3], outcomes
    winner = next(
        pid for (pid, _, _), run in zip(outcomes, runs, strict=True) if run.returncode == 0
    )
    loser_err = next(
        err for (_, _, err), run in zip(outcomes, runs, strict=True) if run.returncode == 3
    )
    assert loser_err.strip().splitlines()[-1] == f"error: {run_dir} is in use by pid {winner}"
    assert [row["round"] for row in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2]
    assert json.loads((run_dir / "config.json").read_text())["run"]["rounds"] == 2
