"""Theory figures and the Table 3 / Table 4 markdown, from synthetic theory.verify results."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from figures_testdata import make_theory_result, png_size
from matplotlib.figure import Figure

from figures.__main__ import main, render_theory
from figures.io import validate_theory_result
from figures.paper_numbers import TABLE3_LOGREG, TABLE4_COUNTS
from figures.tables import theory_tables_markdown
from figures.theory_plots import (
    plot_acc_asr_rounds,
    plot_corollary_counts,
    plot_loss_bounds,
    plot_radii,
)


def _line(axis, label_start: str):
    matches = [line for line in axis.get_lines() if line.get_label().startswith(label_start)]
    assert len(matches) == 1, [line.get_label() for line in axis.get_lines()]
    return matches[0]


def test_loss_bounds_figure_draws_the_series_values():
    result = make_theory_result("continuous", rounds=5)
    figure = plot_loss_bounds(result)
    assert isinstance(figure, Figure)
    clean_axis, backdoor_axis = figure.axes
    for axis, part in ((clean_axis, "clean"), (backdoor_axis, "backdoor")):
        for key, label in (("actual", "actual"), ("lb_jensen", "LB$^J$"), ("ub_r2", "UB R2")):
            line = _line(axis, label)
            expected = [entry["theorem1"][part][key] for entry in result["series"]]
            np.testing.assert_allclose(line.get_ydata(), expected)
            np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4, 5])


def test_loss_bounds_without_series_plots_the_single_round_as_points():
    result = make_theory_result("single-shot", rounds=0)
    figure = plot_loss_bounds(result)
    actual = _line(figure.axes[1], "actual")
    assert actual.get_marker() == "o"
    np.testing.assert_allclose(actual.get_ydata(), [result["theorem1"]["backdoor"]["actual"]])
    np.testing.assert_array_equal(actual.get_xdata(), [result["round"]])


def test_loss_bounds_title_reports_violations():
    result = make_theory_result(rounds=3)
    result["series"][1]["theorem1"]["backdoor"]["violations"] = 7
    figure = plot_loss_bounds(result)
    assert "no per-sample violations" in figure.axes[0].get_title()
    assert "7 per-sample VIOLATIONS" in figure.axes[1].get_title()


@pytest.mark.slow
def test_corollary_figure_compares_each_certified_count_with_its_actual_set():
    result = make_theory_result(rounds=0)
    result["corollary1"].reverse()  # order on disk must not matter
    figure = plot_corollary_counts(result)
    newly_axis, failing_axis, asr_axis, acc_axis = figure.axes
    entries = sorted(result["corollary1"], key=lambda entry: entry["tau"])
    taus = [entry["tau"] for entry in entries]

    def column(*path):
        values = []
        for entry in entries:
            for key in path:
                entry = entry[key]
            values.append(entry)
        return values

    np.testing.assert_allclose(_line(newly_axis, "actual").get_xdata(), taus)
    np.testing.assert_allclose(
        _line(newly_axis, "actual").get_ydata(), column("newly_neutralised_actual")
    )
    np.testing.assert_allclose(
        _line(newly_axis, "certified newly neutralised (Jensen").get_ydata(),
        column("certified_jensen", "newly_neutralised"),
    )
    np.testing.assert_allclose(_line(newly_axis, "net").get_ydata(), column("neutralised_actual"))
    np.testing.assert_allclose(
        _line(failing_axis, "actual").get_ydata(), [9020 - n for n in column("defense", "n_asr")]
    )
    np.testing.assert_allclose(
        _line(failing_axis, "certified neutralised (Theorem-1").get_ydata(),
        column("certified_t1", "neutralised"),
    )
    np.testing.assert_allclose(_line(asr_axis, "FLIP").get_ydata(), column("defense", "n_asr"))
    np.testing.assert_allclose(
        _line(acc_axis, "no defense").get_ydata(), column("no_defense", "n_acc")
    )
    np.testing.assert_allclose(
        _line(acc_axis, "certified kept (Jensen").get_ydata(), column("certified_jensen", "kept")
    )
    assert "UNSOUND" not in newly_axis.get_title()
    entries[1]["sound"] = False
    assert "UNSOUND at tau=0.3" in plot_corollary_counts(result).axes[0].get_title()


def test_corollary_figure_without_newly_neutralised_fields_still_draws_the_net_change():
    result = make_theory_result(rounds=0)
    for entry in result["corollary1"]:
        del entry["newly_neutralised_actual"]
    newly_axis = plot_corollary_counts(result).axes[0]
    assert "not in this file" in newly_axis.get_title()
    assert len(newly_axis.get_lines()) == 1


def test_radii_figure_uses_log_axis_and_moves_undefined_values_to_the_strip():
    result = make_theory_result(
        rounds=4
    )  # eps_A is None at round 2; eps_paper alternates -0.5 / None
    figure = plot_radii(result)
    axis, strip = figure.axes
    assert axis.get_yscale() == "log"
    eps_a = _line(axis, r"$\varepsilon^*_A$").get_ydata()
    assert math.isnan(eps_a[1]) and np.all(np.isfinite(eps_a[[0, 2, 3]]))
    assert np.all(np.isnan(_line(axis, r"$\varepsilon_P$").get_ydata()))
    delta = _line(axis, "realised").get_ydata()
    np.testing.assert_allclose(
        delta, [entry["theorem2"]["delta_inf"] for entry in result["series"]]
    )
    marked = np.concatenate([collection.get_offsets() for collection in strip.collections])
    rows = {tick.get_text(): tick.get_position()[1] for tick in strip.get_yticklabels()}
    marked_points = {(float(x), float(y)) for x, y in marked}
    assert (2.0, rows["eps_A"]) in marked_points
    assert {(float(r), rows["eps_paper"]) for r in (1, 2, 3, 4)} <= marked_points
    assert not any(y == rows["eps_B"] for _, y in marked_points)


def test_acc_asr_rounds_figure_shows_series_rates_in_percent_and_the_paper_lines():
    result = make_theory_result("single-shot", rounds=3)
    result["series"][2]["metrics"] = {
        "no_defense": {"acc": 0.5, "asr": 0.25},
        "defense": {"acc": 0.4, "asr": 0.01},
        "tau": 0.0,
    }
    acc_axis, asr_axis = plot_acc_asr_rounds(result).axes
    np.testing.assert_allclose(
        _line(asr_axis, "ours: no defense").get_ydata(), [61.23, 61.23, 25.0]
    )
    np.testing.assert_allclose(_line(acc_axis, "ours: FLIP").get_ydata(), [83.45, 83.45, 40.0])
    paper = _line(asr_axis, "paper Table 3: FLIP").get_ydata()
    np.testing.assert_allclose(paper, TABLE3_LOGREG["single-shot"]["defense"].asr)
    single = make_theory_result("continuous", rounds=0)
    np.testing.assert_allclose(
        _line(plot_acc_asr_rounds(single).axes[0], "ours: no defense").get_ydata(), [88.12]
    )


def test_theory_table_has_ours_and_the_papers_numbers():
    single = make_theory_result("single-shot", rounds=0, seed=3)
    single["metrics"]["no_defense"] = {"acc": 0.87654, "asr": 0.61234}
    continuous = make_theory_result("continuous", rounds=2, seed=4)
    text = theory_tables_markdown([("single.json", single), ("cont.json", continuous)])
    assert "| single-shot | ACC | 87.65 |" in text and "| single-shot | ASR | 61.23 |" in text
    for attack in ("single-shot", "continuous"):
        for side in ("no_defense", "defense"):
            assert f"{TABLE3_LOGREG[attack][side].acc:.2f}" in text
            assert f"{TABLE3_LOGREG[attack][side].asr:.2f}" in text
            assert (
                f"| {TABLE4_COUNTS[attack][side].n_asr} " in text
                or f"{TABLE4_COUNTS[attack][side].n_asr} |" in text
            )
    entry = next(
        e for e in continuous["metrics"]["per_tau"] if e["tau"] == continuous["metrics"]["tau"]
    )
    assert f"{entry['defense']['n_asr']} (rejected {entry['defense']['rejected_backdoor']})" in text
    assert (
        f"{entry['no_defense']['n_acc']} (rejected {entry['no_defense']['rejected_clean']})" in text
    )


def test_theory_table_without_a_matching_tau_derives_counts_from_rates():
    result = make_theory_result("continuous", rounds=0)
    result["metrics"]["tau"] = 0.42  # no per_tau entry at this tau
    text = theory_tables_markdown([("r.json", result)])
    assert f"{round(0.6123 * 9020)} (rejected n/a)" in text


def test_theory_table_unknown_attack_has_no_paper_numbers():
    result = make_theory_result("label-flip", rounds=0)
    validate_theory_result(result)
    text = theory_tables_markdown([("r.json", result)])
    assert "| label-flip | ACC | 88.12 | 83.45 | n/a | n/a |" in text


@pytest.mark.slow
def test_render_theory_writes_valid_pngs_and_one_table(tmp_path, write_theory_result):
    single = write_theory_result("single", attack="single-shot", rounds=0)
    continuous = write_theory_result("cont", attack="continuous", rounds=6)
    out = tmp_path / "out"
    written = render_theory([single, continuous], out)
    names = sorted(path.name for path in written)
    kinds = ("loss_bounds", "corollary1_counts", "radii", "acc_asr")
    expected = [f"{stem}_{kind}.png" for stem in ("single", "cont") for kind in kinds] + [
        "table3_table4.md"
    ]
    assert names == sorted(expected)
    for path in written:
        if path.suffix == ".png":
            width, height = png_size(path)
            assert width >= 600 and height >= 400
    table = (out / "table3_table4.md").read_text()
    assert "single.json" in table and "cont.json" in table
    assert sorted(p.name for p in out.iterdir()) == names  # no temp files left behind


@pytest.mark.slow
def test_cli_theory_exit_code_and_printed_paths(tmp_path, write_theory_result, capsys):
    path = write_theory_result("r", rounds=2)
    assert main(["theory", str(path), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / "o" / "table3_table4.md") in printed
    assert json.loads(path.read_text())["schema"] == "fliplab.theory.verify/1"
