"""theory.results: the typed per-round results read the stored ``theory.verify --json`` outputs back
and write them out unchanged; in-memory round trips are exact; a schema error names the key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_analysis import synthetic_probe
from theory_instances import backdoor_scenario

from theory.analysis import corollary_round, theorem1_pair, theorem2_round
from theory.report import json_ready
from theory.results import (
    CorollaryRow,
    ResultSchemaError,
    RoundResult,
    Theorem1Result,
    Theorem2Result,
)

RESULTS = Path(__file__).resolve().parents[2] / "results" / "theory"
STORED = [
    "verify-round50.json",
    "verify-round50-single-shot.json",
    "verify-paper-table3.json",
    "verify-paper-table3-single-shot.json",
]
ROUND_KEYS = ("theorem1", "probe", "theorem2", "corollary1", "metrics", "checks")


@pytest.mark.parametrize("name", STORED)
def test_stored_outputs_read_back_and_write_out_unchanged(name):
    payload = json.loads((RESULTS / name).read_text())
    result = RoundResult.from_dict(payload)
    written = json_ready(result.to_dict())
    assert list(written) == list(ROUND_KEYS)
    for key in ROUND_KEYS:  # same keys, same values (the stored files predate today's key order)
        assert json.dumps(written[key], sort_keys=True) == json.dumps(
            payload[key], sort_keys=True
        ), key
    assert result.theorem2.radii.eps_paper_status == payload["theorem2"]["eps_paper_status"]
    assert [row.tau for row in result.corollary1] == payload["taus"]


@pytest.mark.parametrize("shared", [True, False])
def test_in_memory_round_trip_is_exact(shared):
    sc = backdoor_scenario(np.random.default_rng(2), c=4, eps=1e-4, shared=shared)
    probe, sets = synthetic_probe(sc, shared)
    t2 = theorem2_round(probe, sets)
    t1, _ = theorem1_pair(probe.W_nodef, probe.W_def, sets, "probe")
    rows, _ = corollary_round(
        probe, sets, [0.0, 0.5], t2.model, t2.per_sample, t2.support, t2.result.delta_inf
    )
    assert Theorem2Result.from_dict(t2.result.to_dict()) == t2.result
    assert Theorem1Result.from_dict(t1.to_dict()) == t1
    assert [CorollaryRow.from_dict(row.to_dict()) for row in rows] == rows
    assert all(row.robust_jensen_at_delta_inf is not None for row in rows)
    assert t2.result.error_model == ("shared" if shared else "per-sample")


def test_optional_keys_are_absent_not_null():
    """Without a simulated round (the deep probe's stacked model) there is no deltaW_rel_error key,
    and without a frozen model no robust count: the JSON keeps the schema it had."""
    sc = backdoor_scenario(np.random.default_rng(3), c=4, eps=0.01)
    probe, sets = synthetic_probe(sc, True)
    t2 = theorem2_round(probe, sets)
    assert "deltaW_rel_error" in t2.result.to_dict()
    bare = Theorem2Result.from_dict(
        {k: v for k, v in t2.result.to_dict().items() if k != "deltaW_rel_error"}
    )
    assert bare.deltaW_rel_error is None and "deltaW_rel_error" not in bare.to_dict()
    rows, _ = corollary_round(probe, sets, [0.5])
    assert (
        rows[0].robust_jensen_at_delta_inf is None
        and "robust_jensen_at_delta_inf" not in rows[0].to_dict()
    )


def test_schema_errors_name_the_key():
    payload = json.loads((RESULTS / STORED[0]).read_text())
    theorem2 = dict(payload["theorem2"])
    del theorem2["eps_A"]
    with pytest.raises(ResultSchemaError, match="missing key.*eps_A"):
        Theorem2Result.from_dict(theorem2)
    with pytest.raises(ResultSchemaError, match="unknown key.*eps_C"):
        Theorem2Result.from_dict({**payload["theorem2"], "eps_C": 1.0})
    with pytest.raises(ResultSchemaError, match="unknown key.*'lbj'"):
        Theorem1Result.from_dict(
            {
                "clean": payload["theorem1"]["clean"],
                "backdoor": {**payload["theorem1"]["backdoor"], "lbj": 0.0},
            }
        )
    row = {k: v for k, v in payload["corollary1"][0].items() if k != "sound"}
    with pytest.raises(ResultSchemaError, match="missing key.*sound"):
        CorollaryRow.from_dict(row)
    with pytest.raises(ResultSchemaError, match="missing key.*probe"):
        RoundResult.from_dict({k: v for k, v in payload.items() if k != "probe"})
