"""``python -m theory.verify --deep`` / ``--from-state``: exit codes, the missing-torch message,
outputs.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
from deep_instances import synthetic_state

from theory.deep import cli
from theory.deep.state import save_probe_state
from theory.verify import main


def test_missing_torch_is_one_clear_line_and_exit_3(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        cli.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torch" else real(name, *a),
    )
    assert main(["--deep", str(tmp_path), "--round", "2"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs PyTorch" in err[0] and "pip install" in err[0]


def test_from_state_writes_json_and_samples(tmp_path, capsys):
    save_probe_state(tmp_path / "state", synthetic_state(1))
    out = tmp_path / "probe.json"
    assert (
        main(["--from-state", str(tmp_path / "state"), "--json", str(out), "--tau", "0", "0.5"])
        == 0
    )
    text = capsys.readouterr().out
    assert "[FAIL]" not in text and "Summary:" in text and "(b) all layers" in text
    payload = json.loads(out.read_text())
    assert payload["schema"] == cli.SCHEMA and payload["taus"] == [0.0, 0.5]
    assert payload["last_layer_protocol"]["violations_clean"] == 0
    assert all(c["pass"] for c in payload["checks"] if c["must_hold"])
    samples = np.load(cli.samples_path(out))
    assert samples["sgd_backdoor_actual"].dtype == np.float32 and samples[
        "full_clean_ub"
    ].shape == (40,)


def test_missing_state_folder_is_an_io_error_exit_3(tmp_path, capsys):
    assert main(["--from-state", str(tmp_path / "missing")]) == 3
    assert "error:" in capsys.readouterr().err
