"""theory.report: PASS/FAIL/INFO marks, JSON-safe conversion and atomic JSON writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from theory.report import Check, failed_must_hold, json_ready, write_report_json


def test_marks_and_failures():
    ok = Check("a", 0.0, 0.0, passed=True, must_hold=True)
    bad = Check("b", 0.0, 1.0, passed=False, must_hold=True)
    info = Check("c", None, 1.0, passed=False, must_hold=False)
    assert [c.mark for c in (ok, bad, info)] == ["PASS", "FAIL", "INFO"]
    assert failed_must_hold([ok, bad, info]) == [bad]


def test_json_ready_maps_non_finite_to_null_and_numpy_to_python(tmp_path):
    payload = {
        "x": float("inf"),
        "y": np.float64(2.5),
        "z": np.arange(3),
        "n": np.int64(4),
        "nan": float("nan"),
        "check": Check("c", float("-inf"), 1.0, True, True),
    }
    path = write_report_json(tmp_path / "sub" / "out.json", payload)
    back = json.loads(path.read_text())
    assert back["x"] is None and back["nan"] is None and back["y"] == 2.5 and back["z"] == [0, 1, 2]
    assert back["n"] == 4 and back["check"]["bound"] is None and back["check"]["pass"] is True
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]  # no temporary file left behind


def test_json_ready_rejects_unknown_objects():
    with pytest.raises(TypeError, match="JSON"):
        json_ready({"bad": object()})
