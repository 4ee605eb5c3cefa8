"""The smoke CLI ``python -m fldata``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fldata.__main__ import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_cli_reports_mnist_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mnist", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    assert "mnist: loaded in" in out and "(60000, 28, 28) uint8" in out
    assert "class counts 980 1135 1032 1010 982 892 958 1028 974 1009" in out
    assert "fashion-mnist: " in out  # loaded, or one NOT AVAILABLE line


def test_cli_missing_data_exits_three_with_a_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--root", str(tmp_path), "mnist", "cifar10"]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("mnist: NOT AVAILABLE -- data set 'mnist' not found")
    assert any(line.startswith("cifar10: NOT AVAILABLE") for line in lines)
    assert (
        main(["--root", str(tmp_path), "-v", "cifar10"]) == 0
    )  # MNIST not asked for, nothing corrupt
    assert str(tmp_path / "cifar10" / "cifar-10-binary.tar.xz") in capsys.readouterr().out


def test_cli_reports_corrupt_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mnist.pkl.gz").write_bytes(b"not gzip")
    assert main(["--root", str(tmp_path), "mnist"]) == 3
    assert "mnist: CORRUPT -- " in capsys.readouterr().out


@pytest.mark.slow
def test_python_dash_m_fldata_runs() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-m", "fldata", "mnist"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(10000, 28, 28) uint8" in result.stdout
