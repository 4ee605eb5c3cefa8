"""fldata.atomic: the target is replaced only by complete content, and a failed write leaves it
alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fldata.atomic import atomic_write, write_bytes_atomic, write_json_atomic, write_text_atomic


def test_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "result.json"
    write_text_atomic(target, "first")
    write_text_atomic(target, "second")
    assert target.read_text() == "second"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # a normal file, not mkstemp's 0600
    assert write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    write_text_atomic(target, "complete")

    def half_then_crash(stream) -> None:
        stream.write(b"partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_json_formats_of_deepfl_and_theory(tmp_path: Path) -> None:
    payload = {"b": 1.5, "a": [1, 2]}
    run_style = write_json_atomic(tmp_path / "run.json", payload)  # deepfl: indent 2, sorted keys
    assert run_style.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1.5\n}'
    report_style = write_json_atomic(tmp_path / "report.json", payload, indent=1, sort_keys=False)
    assert report_style.read_text().startswith('{\n "b": 1.5,')


def test_strict_json_refuses_nan_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = write_json_atomic(tmp_path / "r.json", {"x": 1.0}, allow_nan=False)
    with pytest.raises(ValueError):
        write_json_atomic(target, {"x": float("nan")}, allow_nan=False)
    assert target.read_text() == '{\n  "x": 1.0\n}'
    assert (
        write_json_atomic(tmp_path / "loose.json", {"x": float("nan")}).read_text()
        == '{\n  "x": NaN\n}'
    )
