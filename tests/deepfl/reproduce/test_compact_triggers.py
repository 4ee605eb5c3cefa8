"""deepfl.reproduce.compact.copy_run_triggers: a FLIP run's inverted triggers travel to results/,
pickle-free.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepfl.reproduce.compact import copy_run_triggers, triggers_path


def test_copies_the_triggers_next_to_the_cell_record(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    masks = np.random.default_rng(0).random((3, 28, 28)).astype(np.float16)
    np.savez(
        run / "flip_triggers.npz",
        masks=masks,
        target=np.array([0, 1, 2]),
        kind=np.array(["warmup"] * 3),
    )
    cell = tmp_path / "cells" / "s0.json"
    cell.parent.mkdir()
    copied = copy_run_triggers(run, cell)
    assert copied == triggers_path(cell) == tmp_path / "cells" / "s0.triggers.npz"
    with np.load(copied, allow_pickle=False) as arrays:
        np.testing.assert_array_equal(arrays["masks"], masks)
        assert list(arrays["kind"]) == ["warmup"] * 3
    assert not list(cell.parent.glob(".*.tmp"))


def test_a_run_without_triggers_copies_nothing(tmp_path: Path) -> None:
    assert copy_run_triggers(tmp_path, tmp_path / "s0.json") is None
    assert not (tmp_path / "s0.triggers.npz").exists()


def test_refuses_pickled_or_foreign_files(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "flip_triggers.npz",
        masks=np.array([{"a": 1}], dtype=object),
        target=np.array([0]),
    )
    with pytest.raises(ValueError):
        copy_run_triggers(tmp_path, tmp_path / "s0.json")
    np.savez(tmp_path / "flip_triggers.npz", something=np.zeros(3))
    with pytest.raises(ValueError, match="not a flip_triggers.npz"):
        copy_run_triggers(tmp_path, tmp_path / "s0.json")
