"""Refactoring must not change the numbers: fixed-seed micro runs against their stored outputs."""

from __future__ import annotations

import json

import pytest
import torch
from golden_run import DEFENSES, GOLDEN_PATH, golden_outputs, stored_cpu_capability

MADE_WITH = stored_cpu_capability()


@pytest.mark.slow
@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() != MADE_WITH,
    reason=f"stored outputs were made with {MADE_WITH} kernels; bitwise only there",
)
def test_micro_runs_match_their_stored_metrics(tmp_path) -> None:
    stored = json.loads(GOLDEN_PATH.read_text())
    outputs = golden_outputs(tmp_path)
    assert sorted(outputs) == sorted(stored) == sorted(DEFENSES)
    for defense in DEFENSES:
        assert outputs[defense]["rows"] == stored[defense]["rows"], defense
        assert outputs[defense]["summary"] == stored[defense]["summary"], defense
