"""`python -m theory.verify`: argument errors, and an end-to-end run on a small real MNIST slice
whose saved state reproduces the JSON numbers through the library."""

from __future__ import annotations

import json

import numpy as np
import pytest

from theory.verify import build_parser, main

SMALL_RUN = [
    "--round",
    "2",
    "--train-limit",
    "4000",
    "--test-limit",
    "1000",
    "--no-progress",
    "--config",
    "pretrain_max_rounds=2",
    "pretrain_batch_size=null",
    "inversion_maxiter=3",
    "inversion_subsample=500",
]


@pytest.mark.parametrize(
    "argv",
    [
        ["--bogus"],
        ["--tau", "1.5"],
        ["--round", "0"],
        ["--attack", "dba"],
        ["--model", "taylor2"],
        ["--blas-threads", "0"],
    ],
)
def test_bad_arguments_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_unknown_engine_config_key_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--config", "no_such_field=1"])
    assert exc.value.code == 2
    assert "allowed keys" in capsys.readouterr().err


@pytest.mark.slow
def test_end_to_end_small_slice_and_state_reproduces_json(tmp_path, capsys):
    from theory.saved_state import load_verification_state, recompute

    json_path, state_dir = tmp_path / "verify.json", tmp_path / "state"
    status = main(
        SMALL_RUN
        + [
            "--cache-dir",
            str(tmp_path / "cache"),
            "--json",
            str(json_path),
            "--save-state",
            str(state_dir),
            "--all-rounds",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "[FAIL]" not in out and "Table 3 analogue" in out
    payload = json.loads(json_path.read_text())
    assert payload["schema"] == "fliplab.theory.verify/1" and payload["round"] == 2
    assert all(c["pass"] for c in payload["checks"] if c["must_hold"])
    for name in ("clean", "backdoor"):
        assert set(payload["theorem1"][name]) >= {
            "lb",
            "lb_jensen",
            "actual",
            "ub",
            "ub_r2",
            "violations",
        }
        assert payload["theorem1"][name]["violations"] == 0
        assert payload["theorem1"][name]["lb"] <= 0.0  # F1: the literal bound is never positive
    assert payload["theorem2"]["eps_paper_status"] in ("vacuous", "undefined")
    assert [row["tau"] for row in payload["corollary1"]] == [0.0, 0.4, 0.6, 0.8]
    assert all(row["sound"] for row in payload["corollary1"])
    assert [entry["round"] for entry in payload["series"]] == [1, 2]

    arrays, meta = load_verification_state(state_dir)
    assert (
        arrays["X_clean"].shape[1] == arrays["W_nodef"].shape[1] - 1
    )  # saved without the bias column
    assert 0.0 <= arrays["X_backdoor"].min() and arrays["X_backdoor"].max() <= 1.0
    again = recompute(arrays, meta, payload["taus"], payload["metrics"]["tau"])
    for name in ("clean", "backdoor"):
        for key in ("lb", "lb_jensen", "actual", "ub", "ub_r2"):
            assert again["theorem1"][name][key] == pytest.approx(
                payload["theorem1"][name][key], rel=1e-12, abs=1e-15
            )
            assert again["probe"]["theorem1"][name][key] == pytest.approx(
                payload["probe"]["theorem1"][name][key], rel=1e-12, abs=1e-15
            )
    for key in ("eps_A", "eps_B", "eps_paper", "lbj0", "C_eps", "delta_inf"):
        ours, saved = again["theorem2"][key], payload["theorem2"][key]
        assert (ours is None) == (saved is None)
        if saved is not None:
            assert ours == pytest.approx(saved, rel=1e-12)
    for setting in ("no_defense", "defense"):
        assert again["metrics"][setting] == payload["metrics"][setting]
    n_asr = [e["defense"]["n_asr"] for e in payload["metrics"]["per_tau"]]
    assert np.all(np.diff(n_asr) <= 0)  # a higher threshold never accepts more backdoor samples
