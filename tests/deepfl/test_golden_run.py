"""Refactoring must not change the numbers: fixed-seed micro runs against their stored outputs,
bitwise on a machine like the one that wrote them, within the measured drift on any machine."""

from __future__ import annotations

from typing import Any

import pytest
from golden_run import DEFENSES, golden_made_on, golden_outputs, stored_goldens

from deepfl.machine import cpu_fingerprint

# Largest |difference| allowed between the outputs of two machines, by the metric key a value sits
# under; any other float, and every int, string and list length, must be equal. The same code on
# an Intel and an AMD AVX-512 machine differed by at most 3 of 300 test images in ACC (0.010),
# 3 of 277 in ASR (0.011), one image of a class in per-class ACC (0.038), 0.0016 in an aggregation
# weight and 0.0009 in rejection AUC, and picked the same clients every round; the allowances are
# about twice that.
CROSS_MACHINE_DRIFT = {
    "acc": 0.02,
    "asr": 0.025,
    "max_asr": 0.025,
    "per_class_acc": 0.1,
    "aggregation": 0.005,
    "rejection_auc": 0.005,
}
GOLDENS = stored_goldens()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """This machine's outputs of the micro runs, made once for the module's tests."""
    return golden_outputs(tmp_path_factory.mktemp("golden"))


def drift_violations(
    actual: Any, expected: Any, where: str = "", allowed: float = 0.0
) -> list[str]:
    """Where ``actual`` differs from ``expected`` by more than :data:`CROSS_MACHINE_DRIFT` allows
    (the allowance of the nearest enclosing key that has one)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: {actual!r} is not a mapping"]
        if sorted(actual) != sorted(expected):
            return [f"{where}: keys {sorted(actual)} != {sorted(expected)}"]
        return [
            violation
            for key in expected
            for violation in drift_violations(
                actual[key], expected[key], f"{where}/{key}", CROSS_MACHINE_DRIFT.get(key, allowed)
            )
        ]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: {actual!r} != {expected!r}"]
        pairs = zip(actual, expected, strict=True)
        return [
            v
            for i, (a, e) in enumerate(pairs)
            for v in drift_violations(a, e, f"{where}[{i}]", allowed)
        ]
    if isinstance(expected, float) and isinstance(actual, float):
        return [] if abs(actual - expected) <= allowed else [f"{where}: {actual} != {expected}"]
    return [] if actual == expected else [f"{where}: {actual!r} != {expected!r}"]


@pytest.mark.slow
def test_micro_runs_match_bitwise_the_outputs_made_on_this_kind_of_machine(outputs) -> None:
    machine = cpu_fingerprint()
    stored = golden_made_on(machine)
    if stored is None:
        pytest.skip(
            f"no stored outputs were made on {machine}; the drift test still runs "
            "(python tests/deepfl/golden_run.py adds this machine's)"
        )
    assert sorted(outputs) == sorted(stored) == sorted(DEFENSES)
    for defense in DEFENSES:
        assert outputs[defense]["rows"] == stored[defense]["rows"], defense
        assert outputs[defense]["summary"] == stored[defense]["summary"], defense


@pytest.mark.slow
@pytest.mark.parametrize("made_on", sorted(GOLDENS))
def test_micro_runs_stay_within_the_cross_machine_drift_of_every_stored_output(
    outputs, made_on: str
) -> None:
    assert drift_violations(outputs, GOLDENS[made_on]["outputs"]) == []


def test_the_drift_check_passes_equal_outputs_and_catches_a_changed_decision() -> None:
    stored = next(iter(GOLDENS.values()))["outputs"]
    assert drift_violations(stored, stored) == []
    nudged = {"acc": {"0.0": 0.5 + 0.019}, "accepted": [0, 1], "round": 3}
    assert drift_violations(nudged, {"acc": {"0.0": 0.5}, "accepted": [0, 1], "round": 3}) == []
    assert drift_violations({"acc": {"0.0": 0.53}}, {"acc": {"0.0": 0.5}}) == [
        "/acc/0.0: 0.53 != 0.5"
    ]
    assert drift_violations({"accepted": [0, 2]}, {"accepted": [0, 1]}) == ["/accepted[1]: 2 != 1"]
    assert drift_violations({"weight": 0.1001}, {"weight": 0.1}) == ["/weight: 0.1001 != 0.1"]
    assert drift_violations({"acc": 0.5}, {"acc": {"0.0": 0.5}}) == ["/acc: 0.5 is not a mapping"]
    assert drift_violations({"acc": {}}, {"acc": {"0.0": 0.5}}) == ["/acc: keys [] != ['0.0']"]
