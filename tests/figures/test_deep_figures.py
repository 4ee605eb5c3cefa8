"""deepfl run folders: ACC/ASR over rounds, final table beside the paper's Tables 1-2, ROC."""

from __future__ import annotations

import numpy as np
import pytest
from figures_testdata import make_run_dir, png_size
from matplotlib.figure import Figure

from figures.__main__ import render_deep
from figures.deep_plots import plot_acc_asr_over_rounds, plot_roc, run_identity, summarise_run
from figures.io import load_deep_run
from figures.paper_numbers import TABLE1_MNIST_SINGLE_SHOT, TABLE2_MNIST_CONTINUOUS
from figures.tables import deep_table_markdown
from fldata.metrics import auc, roc_curve


def test_run_identity_maps_config_to_paper_rows():
    def config(server, client, kind="continuous", behaviour="standard"):
        return {
            "data": {"dataset": "mnist"},
            "defense": {"server": server, "client": client},
            "attack": {"kind": kind, "behaviour": behaviour},
        }

    assert run_identity(config("fedavg", "none")) == ("mnist", "none", "continuous")
    assert run_identity(config("fedavg", "flip", "single-shot")) == ("mnist", "flip", "single-shot")
    assert run_identity(config("krum", "none")) == ("mnist", "krum", "continuous")
    assert run_identity(config("median", "flip", behaviour="adaptive")) == (
        "mnist",
        "median+flip",
        "continuous (adaptive)",
    )


def test_summarise_run_reads_curves_at_the_requested_tau(tmp_path):
    run = load_deep_run(make_run_dir(tmp_path, "r", taus=(0.0, 0.3), rounds=5))
    summary = summarise_run(run, tau=0.3)
    expected = [record["acc"]["0.3"] for record in run.records]
    np.testing.assert_allclose(summary.acc, expected)
    np.testing.assert_array_equal(summary.rounds, [1, 2, 3, 4, 5])
    assert summary.final_asr == run.summary["final"]["asr"]["0.3"]
    assert summary.attack_start == 3  # pretrain_rounds = 2
    assert summarise_run(run).tau == 0.0


def test_unevaluated_rounds_are_skipped_and_attack_rounds_found(tmp_path):
    run = load_deep_run(
        make_run_dir(tmp_path, "r", attack="single-shot", rounds=9, eval_every=3, pretrain_rounds=4)
    )
    summary = summarise_run(run)
    np.testing.assert_array_equal(summary.rounds, [3, 6, 9])
    assert summary.attack_start == 5
    np.testing.assert_array_equal(summary.attack_rounds, [6])
    assert len(summary.acc) == len(summary.asr) == 3


def test_default_tau_is_the_flip_clients_rejection_tau_when_the_config_sets_it(tmp_path):
    path = make_run_dir(tmp_path, "r", client="flip", taus=(0.0, 0.3, 0.7))
    run = load_deep_run(path)
    assert summarise_run(run).tau == 0.0
    run.config["defense"]["client_params"]["rejection_tau"] = 0.7
    summary = summarise_run(run)
    assert summary.tau == 0.7 and summary.final_acc == run.summary["final"]["acc"]["0.7"]
    run.summary["tau"] = 0.3  # no engine writes this key: it is not read
    assert summarise_run(run).tau == 0.7


def test_acc_asr_figure_overlays_runs_in_percent(tmp_path):
    summaries = [
        summarise_run(load_deep_run(make_run_dir(tmp_path, name, server=server, seed=seed)))
        for seed, (name, server) in enumerate((("a", "fedavg"), ("b", "krum")))
    ]
    figure = plot_acc_asr_over_rounds(summaries)
    assert isinstance(figure, Figure)
    acc_axis, asr_axis = figure.axes
    labels = [
        line.get_label() for line in acc_axis.get_lines() if not line.get_label().startswith("_")
    ]
    assert labels == ["No Defense / continuous (a)", "Krum / continuous (b)"]
    data_lines = [line for line in asr_axis.get_lines() if not line.get_label().startswith("_")]
    np.testing.assert_allclose(data_lines[1].get_ydata(), 100 * summaries[1].asr)


def test_deep_table_puts_the_papers_mnist_numbers_beside_ours(tmp_path):
    runs = [
        make_run_dir(tmp_path, "nd", attack="single-shot", final_acc=0.9634, final_asr=0.7771),
        make_run_dir(
            tmp_path, "fl", client="flip", attack="continuous", final_acc=0.9512, final_asr=0.0321
        ),
        make_run_dir(tmp_path, "mk", server="multikrum", attack="continuous"),
    ]
    text = deep_table_markdown([summarise_run(load_deep_run(run)) for run in runs])
    nd, fl = TABLE1_MNIST_SINGLE_SHOT["none"], TABLE2_MNIST_CONTINUOUS["flip"]
    assert f"| single-shot | No Defense | 96.34 | 77.71 | {nd.acc:.2f} | {nd.asr:.2f} |" in text
    assert f"| continuous | FLIP | 95.12 | 3.21 | {fl.acc:.2f} | {fl.asr:.2f} |" in text
    assert "| continuous | multikrum | 97.12 | 1.23 | n/a | n/a |" in text
    rows = [
        line for line in text.splitlines() if line.startswith(("| continuous", "| single-shot"))
    ]
    assert [row.split(" | ")[1] for row in rows] == [
        "FLIP",
        "multikrum",
        "No Defense",
    ]  # by attack, paper order


def test_roc_figure_uses_the_shared_metric(tmp_path):
    rng = np.random.default_rng(0)
    clean, backdoor = rng.beta(8, 1, 200), rng.beta(2, 2, 150)
    figure = plot_roc(clean, backdoor)
    curve = figure.axes[0].get_lines()[0]
    fpr, tpr, _ = roc_curve(clean, backdoor)
    np.testing.assert_allclose(curve.get_xdata(), fpr)
    np.testing.assert_allclose(curve.get_ydata(), tpr)
    assert f"AUC = {auc(clean, backdoor):.3f}" in curve.get_label()


@pytest.mark.slow
def test_render_deep_writes_pngs_table_and_roc_only_where_saved(tmp_path):
    with_conf = make_run_dir(tmp_path / "runs", "flip_cont", client="flip", confidences=True)
    without = make_run_dir(tmp_path / "runs", "nodef_cont", seed=1)
    out = tmp_path / "out"
    written = render_deep([with_conf, without], out)
    assert sorted(path.name for path in written) == [
        "acc_asr_over_rounds.png",
        "flip_cont_roc.png",
        "table_final_acc_asr.md",
    ]
    for path in written:
        if path.suffix == ".png":
            png_size(path)
    assert "| continuous | FLIP |" in (out / "table_final_acc_asr.md").read_text()
