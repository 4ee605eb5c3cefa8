"""Input validation (clear error naming file and key, exit status 3, no traceback) and atomic
writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from figures_testdata import make_run_dir, make_theory_result
from matplotlib.figure import Figure

from figures.__main__ import main
from figures.io import ResultFileError, load_deep_run, load_theory_result, save_figure, write_text

REPO_ROOT = Path(__file__).resolve().parents[2]


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def _run_cli(args: list[str], capsys) -> tuple[int, str]:
    status = main(args)
    captured = capsys.readouterr()
    return status, captured.err


def test_missing_theory_file_exits_3_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    status, err = _run_cli(["theory", str(missing), "--out", str(tmp_path / "o")], capsys)
    assert status == 3
    assert str(missing) in err and "file not found" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_wrong_schema_is_named(tmp_path, capsys):
    data = make_theory_result()
    data["schema"] = "something.else/2"
    path = _write(tmp_path / "r.json", data)
    status, err = _run_cli(["theory", str(path), "--out", str(tmp_path / "o")], capsys)
    assert (
        status == 3 and "'schema'" in err and "fliplab.theory.verify/1" in err and str(path) in err
    )


@pytest.mark.parametrize(
    "dotted",
    [
        "theorem1.backdoor.ub_r2",
        "theorem2.eps_paper_status",
        "metrics.defense.asr",
        "metrics.backdoor_total",
        "attack",
    ],
)
def test_missing_nested_key_is_named(tmp_path, dotted):
    data = make_theory_result()
    *parents, leaf = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    del node[leaf]
    path = _write(tmp_path / "r.json", data)
    with pytest.raises(ResultFileError, match=rf"r\.json: missing key '{dotted}'"):
        load_theory_result(path)


def test_missing_key_inside_a_list_entry_is_named_with_its_index(tmp_path):
    data = make_theory_result(rounds=3)
    del data["corollary1"][2]["certified_jensen"]["neutralised"]
    with pytest.raises(
        ResultFileError, match=r"missing key 'corollary1\[2\]\.certified_jensen\.neutralised'"
    ):
        load_theory_result(_write(tmp_path / "a.json", data))
    data = make_theory_result(rounds=3)
    del data["series"][1]["theorem2"]["delta_inf"]
    with pytest.raises(ResultFileError, match=r"missing key 'series\[1\]\.theorem2\.delta_inf'"):
        load_theory_result(_write(tmp_path / "b.json", data))


def test_invalid_json_and_non_object(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ResultFileError, match="bad.json: not valid JSON"):
        load_theory_result(bad)
    with pytest.raises(ResultFileError, match="top level must be a JSON object"):
        load_theory_result(_write(tmp_path / "list.json", [1, 2]))


def test_one_bad_file_among_several_writes_nothing(tmp_path, capsys):
    good = _write(tmp_path / "good.json", make_theory_result())
    bad_data = make_theory_result()
    del bad_data["taus"]
    bad = _write(tmp_path / "bad.json", bad_data)
    status, err = _run_cli(["theory", str(good), str(bad), "--out", str(tmp_path / "o")], capsys)
    assert status == 3 and "bad.json: missing key 'taus'" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("broken", ["summary.json", "config.json", "metrics.jsonl"])
def test_deep_run_with_a_missing_file_exits_3(tmp_path, capsys, broken):
    run = make_run_dir(tmp_path, "run")
    (run / broken).unlink()
    status, err = _run_cli(["deep", str(run), "--out", str(tmp_path / "o")], capsys)
    assert status == 3 and str(run / broken) in err and "file not found" in err


def test_deep_run_with_missing_keys_names_them(tmp_path, capsys):
    run = make_run_dir(tmp_path, "run")
    (run / "summary.json").write_text(json.dumps({"final": {"acc": {"0.0": 0.9}}}))
    status, err = _run_cli(["deep", str(run), "--out", str(tmp_path / "o")], capsys)
    assert status == 3 and "summary.json: missing key 'final.asr'" in err
    run2 = make_run_dir(tmp_path, "run2")
    with (run2 / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps({"round": 99, "acc": {"0.0": 0.5}}) + "\n")
    status, err = _run_cli(["deep", str(run2), "--out", str(tmp_path / "o")], capsys)
    assert status == 3 and "metrics.jsonl: missing key 'line 7:.asr'" in err


def test_torn_last_metrics_line_is_dropped_but_a_torn_middle_line_is_an_error(tmp_path, capsys):
    run = make_run_dir(tmp_path, "run", rounds=4)
    with (run / "metrics.jsonl").open("a") as handle:
        handle.write('{"round": 5, "acc": {"0.0"')
    assert [record["round"] for record in load_deep_run(run).records] == [1, 2, 3, 4]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], lines[-1], lines[1]]) + "\n")
    with pytest.raises(ResultFileError, match="metrics.jsonl: line 2 is not valid JSON"):
        load_deep_run(run)


def test_deep_run_without_the_requested_tau_lists_the_recorded_ones(tmp_path, capsys):
    run = make_run_dir(tmp_path, "run", taus=(0.0, 0.3))
    status, err = _run_cli(["deep", str(run), "--out", str(tmp_path / "o"), "--tau", "0.7"], capsys)
    assert status == 2 and "no tau 0.7" in err and "recorded taus: 0.0, 0.3" in err


def test_bad_confidences_are_reported_as_input_errors(tmp_path, capsys):
    run = make_run_dir(tmp_path, "run")
    np.savez(
        run / "confidences.npz", conf_clean=np.array([0.5, np.nan]), conf_backdoor=np.array([0.2])
    )
    status, err = _run_cli(["deep", str(run), "--out", str(tmp_path / "o")], capsys)
    assert status == 3 and "confidences.npz: conf_clean contains NaN" in err
    assert not (tmp_path / "o").exists()  # nothing written when one input is bad
    np.savez(run / "confidences.npz", clean_confidence=np.array([0.5]))
    status, err = _run_cli(["deep", str(run), "--out", str(tmp_path / "o")], capsys)
    assert (
        status == 3 and "missing arrays: need 'clean_confidence' and 'backdoor_confidence'" in err
    )


@pytest.mark.slow
def test_cli_subprocess_prints_no_traceback_and_imports_no_heavy_package(tmp_path):
    probe = (
        "import sys, figures.__main__ as cli; heavy = [m for m in sys.modules if m.split('.')[0] "
        "in ('torch', 'linear_fl', 'deepfl') or (m.startswith('theory.') and m != "
        "'theory.paper_reference')]; assert not heavy, heavy; sys.exit(cli.main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "theory", str(tmp_path / "x.json"), "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = write_text(tmp_path / "t.md", "old")

    class Exploding(Figure):
        def savefig(self, *args, **kwargs):
            args[0].write(b"partial")  # savefig receives the temporary file's stream
            raise RuntimeError("disk full")

    png = tmp_path / "f.png"
    png.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(Exploding(), png)
    assert png.read_bytes() == b"previous"
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "t.md"]


@pytest.mark.slow
def test_deep_run_with_missing_or_repeated_rounds_needs_allow_gaps(tmp_path, capsys):
    run = make_run_dir(tmp_path, "run", rounds=6)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:3] + lines[4:]) + "\n")  # round 4 lost
    status, err = _run_cli(["deep", str(run), "--out", str(tmp_path / "o")], capsys)
    assert status == 3 and "metrics.jsonl: rounds 4 are missing" in err and "--allow-gaps" in err
    assert not (tmp_path / "o").exists()
    with pytest.warns(UserWarning, match="rounds 4 are missing; plotted anyway"):
        assert main(["deep", str(run), "--out", str(tmp_path / "o"), "--allow-gaps"]) == 0
    (run / "metrics.jsonl").write_text(
        "\n".join(lines[:3] + lines[2:]) + "\n"
    )  # rounds 1,2,3,3,4,5,6
    with pytest.raises(
        ResultFileError, match=r"rounds are repeated or out of order \(1, 2, 3, 3, 4"
    ):
        load_deep_run(run)


def test_unwritable_out_is_refused_before_any_input_is_read(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    status, err = _run_cli(
        ["deep", str(tmp_path / "no-such-run"), "--out", str(tmp_path / "file" / "o")], capsys
    )
    assert status == 3 and err.startswith("error: --out") and "no-such-run" not in err
