"""Every committed cell under results/ belongs to a table of the driver and was made with the config
its flags give today, so no table mixes settings (a scale change needs a rerun with --force)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepfl.reproduce.execute import make_job, stale_result
from deepfl.reproduce.grid import Cell
from deepfl.reproduce.scales import SCALES
from deepfl.reproduce.tables import TABLES

RESULTS = Path(__file__).resolve().parents[3] / "results"
SEEDS = range(3)


def committed(scale: str) -> set[Path]:
    return set((RESULTS / scale / "cells").glob("*/*/*/s*.json"))


@pytest.mark.parametrize("scale_name", ["cpu-small", "paper"])
def test_committed_cells_belong_to_a_table_and_are_not_stale(
    scale_name: str, tmp_path: Path
) -> None:
    scale = SCALES[scale_name]
    jobs = {}
    for spec in TABLES.values():
        for row in spec.build(scale):
            for seed in SEEDS:
                job = make_job(Cell(row, scale, seed), tmp_path, RESULTS, [])
                jobs[Path(job.result_path)] = job
    found = committed(scale_name)
    assert found, f"no committed cells at {scale_name}"
    assert sorted(found - set(jobs)) == []  # a cell no table reads is never shown
    stale = {str(path.relative_to(RESULTS)): stale_result(jobs[path]) for path in sorted(found)}
    assert {path: why for path, why in stale.items() if why is not None} == {}
