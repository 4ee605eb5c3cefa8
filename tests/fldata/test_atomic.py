"""fldata.atomic: the target is replaced only by complete content, and a failed write leaves it alone."""
from __future__ import annotations

from pathlib import Path

import pytest

import os

from fldata.atomic import atomic_write, write_bytes_atomic, write_text_atomic


def test_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "result.json"
    write_text_atomic(target, "first")
    write_text_atomic(target, "second")
    assert target.read_text() == "second"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # a normal file, not mkstemp's 0600
    assert write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01") .read_bytes() == b"\x00\x01"


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
