"""figures.reproduce_plots and ``python -m figures reproduce`` on the committed cpu-small cells
(real results).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from deepfl.reproduce.compact import read_cell
from figures.__main__ import render_reproduce
from figures.reproduce_plots import _first_attack_round, plot_over_rounds

SCALE_DIR = Path(__file__).resolve().parents[2] / "results" / "cpu-small"
CELLS = sorted((SCALE_DIR / "cells").glob("mnist/continuous/fedavg/s*.json"))

pytestmark = pytest.mark.skipif(not CELLS, reason="no committed cpu-small FedAvg cells")


def test_over_rounds_marks_the_first_attack_round_and_plots_the_seed_mean() -> None:
    records = [read_cell(path) for path in CELLS]
    first = next(
        r
        for r, phase in zip(records[0]["rounds"], records[0]["phase"], strict=True)
        if phase != "pretrain"
    )
    assert _first_attack_round(records, "mnist", "continuous") == first
    assert _first_attack_round(records, "cifar10", "continuous") is None
    figure = plot_over_rounds(records)
    asr_axis, acc_axis = figure.axes[0], figure.axes[1]
    lines = [line for line in asr_axis.get_lines() if line.get_label() == "fedavg"]
    assert len(lines) == 1
    expected = np.mean([[100 * v for v in record["asr"][0]] for record in records], axis=0)
    np.testing.assert_allclose(lines[0].get_ydata(), expected)
    for axis in (asr_axis, acc_axis):
        marks = [line for line in axis.get_lines() if line.get_linestyle() == "--"]
        assert [line.get_xdata()[0] for line in marks] == [first]


def test_no_phase_information_draws_no_attack_mark() -> None:
    record = copy.deepcopy(read_cell(CELLS[0]))
    record["phase"] = ["pretrain"] * len(record["rounds"])
    figure = plot_over_rounds([record])
    assert not [line for line in figure.axes[0].get_lines() if line.get_linestyle() == "--"]


def test_render_reproduce_writes_one_over_rounds_figure_per_data_set(tmp_path: Path) -> None:
    written = render_reproduce(SCALE_DIR, tmp_path)
    names = {path.name for path in written}
    assert "over_rounds_mnist.png" in names
    assert all(path.stat().st_size > 10_000 for path in written)


def _fake_triggers(masks: np.ndarray, target: int) -> dict[str, np.ndarray]:
    count = len(masks)
    return {
        "masks": masks.astype(np.float16),
        "patterns": np.ones((count, 1, 28, 28), dtype=np.float16),
        "client": np.arange(count, dtype=np.int64),
        "round": np.full(count, 11, dtype=np.int64),
        "target": np.arange(count, dtype=np.int64) % 10,
        "source": np.full(count, -1, dtype=np.int64),
        "kind": np.array(["warmup"] * count),
        "mask_l1": masks.sum(axis=(1, 2)).astype(np.float32),
    }


def test_trigger_figure_shows_the_true_trigger_then_the_targets_universal_trigger(
    tmp_path: Path,
) -> None:
    from figures.reproduce_plots import plot_inverted_triggers, trigger_figures
    from fldata.triggers import dba_trigger

    record = read_cell(CELLS[0])
    target = int(record["config"]["attack"]["target"])
    row = tmp_path / "cells" / "mnist" / "continuous" / "flip+fliplab"
    row.mkdir(parents=True)
    (row / "s0.json").write_text(CELLS[0].read_text())
    masks = np.zeros((4, 28, 28))
    for k in range(4):
        masks[k, : k + 1, : k + 1] = 1.0
    np.savez(row / "s0.triggers.npz", **_fake_triggers(masks, target))
    figures = trigger_figures(tmp_path / "cells")
    assert list(figures) == ["flip_triggers_mnist_continuous_flip_fliplab.png"]
    truth = dba_trigger((1, 28, 28))
    figure = plot_inverted_triggers(
        _fake_triggers(masks, target), truth.mask, truth.pattern, target, "t"
    )
    titles = [axis.get_title() for axis in figure.axes]
    assert titles[0].startswith("true trigger") and f"-> {target}" in titles[0]
    assert f"all -> {target}" in titles[1]  # the target's universal trigger comes first
    assert len(titles) == 1 + 4
