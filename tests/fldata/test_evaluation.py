"""fldata.evaluation: ACC/ASR keyed by float tau, exact lookup, and the run directories' JSON
shape.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fldata.evaluation import EvaluationResult, TauNotEvaluatedError

# rows and summaries written by the engine before EvaluationResult existed
# (tests/deepfl/golden_run.py, the outputs made on the first machine)
GOLDEN_DIR = Path(__file__).resolve().parents[1] / "deepfl" / "data" / "micro_runs_golden"
GOLDEN = GOLDEN_DIR / "genuineintel-avx512.json"


OLD_RUNS = ("fedavg", "krum", "flame")


def _old_entries() -> list[dict]:
    stored = {
        name: run
        for name, run in json.loads(GOLDEN.read_text())["outputs"].items()
        if name in OLD_RUNS
    }
    rows = [row for run in stored.values() for row in run["rows"]]
    finals = [run["summary"]["final"] for run in stored.values()]
    return rows + finals


def test_old_rows_and_summaries_read_back_and_write_the_same_json() -> None:
    entries = _old_entries()
    assert len(entries) == 15
    for entry in entries:
        result = EvaluationResult.from_dict(entry)
        assert result.taus == (0.0, 0.3, 0.5)
        written = result.to_dict()
        assert json.dumps(written, sort_keys=True) == json.dumps(
            {key: entry[key] for key in ("acc", "asr", "per_class_acc")}, sort_keys=True
        )
        assert result.rates_at(0.3) == (entry["acc"]["0.3"], entry["asr"]["0.3"])


def test_lookup_is_exact_and_a_missing_tau_lists_the_recorded_ones() -> None:
    result = EvaluationResult.build([0.0, 0.3], [0.9, 0.8], [0.5, 0.1])
    assert (
        result.rates_at(0.3) == (0.8, 0.1) and result.acc_at(0) == 0.9 and result.asr_at(0.0) == 0.5
    )
    with pytest.raises(TauNotEvaluatedError) as raised:
        result.rates_at(0.1 + 0.2)  # 0.30000000000000004 was not evaluated
    assert str(raised.value) == "no tau 0.30000000000000004 was evaluated; recorded taus: 0.0, 0.3"
    assert isinstance(raised.value, KeyError)


@pytest.mark.parametrize("tau", [0.0, 0.1, 0.3, 1 / 3, 0.7, 1e-05, 0.9999999999999999, 1.0])
def test_every_float_tau_survives_its_json_key(tau: float) -> None:
    result = EvaluationResult.build([tau], [0.25], [0.75], [1.0, None])
    again = EvaluationResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result and again.rates_at(tau) == (0.25, 0.75)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"acc": None, "asr": {}}, "'acc' and 'asr' must be objects"),
        ({"acc": {"x": 0.5}, "asr": {"x": 0.5}}, "'acc' keys must be numbers"),
        ({"acc": {"0.3": 0.5}, "asr": {"0.4": 0.5}}, "must have the same taus"),
        ({"acc": {"0.3": 0.5, "0.30": 0.5}, "asr": {"0.3": 0.5}}, "the same tau twice"),
        ({"acc": {"0.3": "high"}, "asr": {"0.3": 0.5}}, "rates must be numbers"),
        ({"acc": {"0.3": 0.5}, "asr": {"0.3": 0.5}, "per_class_acc": 3}, "must be a list"),
    ],
)
def test_malformed_entries_are_refused_with_the_reason(raw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EvaluationResult.from_dict(raw)


def test_undefined_rates_and_misaligned_fields() -> None:
    result = EvaluationResult.from_dict({"acc": {"0.0": None}, "asr": {"0.0": float("nan")}})
    assert math.isnan(result.acc_at(0.0)) and math.isnan(result.asr_at(0.0))
    assert result.per_class_acc is None
    with pytest.raises(ValueError, match="aligned"):
        EvaluationResult((0.0, 0.3), (0.9,), (0.1, 0.2))
    with pytest.raises(ValueError, match="distinct"):
        EvaluationResult((0.3, 0.3), (0.9, 0.9), (0.1, 0.1))
