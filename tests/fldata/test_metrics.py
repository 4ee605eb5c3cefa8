"""Tests for fldata.metrics: thresholded ACC/ASR (THEORY.md sections 7.2, 10) and rejection
ROC/AUC.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fldata.metrics import (
    ThresholdCounts,
    accuracy,
    attack_success_rate,
    auc,
    confidence,
    roc_curve,
    softmax,
    threshold_counts,
    threshold_counts_many,
)

# Five samples, three classes; argmax / conf per row written beside it.
PROBS = np.array(
    [
        [0.90, 0.05, 0.05],  # argmax 0, conf 0.90
        [0.20, 0.70, 0.10],  # argmax 1, conf 0.70
        [0.40, 0.35, 0.25],  # argmax 0, conf 0.40
        [0.10, 0.30, 0.60],  # argmax 2, conf 0.60
        [0.34, 0.33, 0.33],  # argmax 0, conf 0.34
    ]
)
LABELS = np.array([0, 1, 1, 2, 0])  # correct: rows 0, 1, 3, 4; wrong: row 2


def _random_probs(rng: np.random.Generator, n: int, c: int, scale: float = 3.0) -> np.ndarray:
    return softmax(scale * rng.normal(size=(n, c)))


def test_hand_computed_counts() -> None:
    counts = threshold_counts(PROBS, LABELS, tau=0.5)
    # conf >= 0.5: rows 0, 1, 3 (all correct); rejected: rows 2, 4.
    assert counts == ThresholdCounts(
        tau=0.5, total=5, accepted_correct=3, accepted_wrong=0, rejected=2
    )
    assert counts.rate == pytest.approx(3 / 5)
    counts = threshold_counts(PROBS, LABELS, tau=0.35)
    # conf >= 0.35: rows 0, 1, 2, 3 -> correct 0, 1, 3; wrong 2; rejected 4.
    assert (counts.accepted_correct, counts.accepted_wrong, counts.rejected) == (3, 1, 1)


def test_threshold_is_inclusive() -> None:
    """conf == tau is accepted (the rule is conf >= tau; rejection is conf < tau)."""
    counts = threshold_counts(PROBS, LABELS, tau=0.7)
    assert (counts.accepted_correct, counts.rejected) == (2, 3)


def test_tau_zero_equals_plain_accuracy() -> None:
    rng = np.random.default_rng(0)
    probs = _random_probs(rng, 500, 10)
    labels = rng.integers(0, 10, size=500)
    assert accuracy(probs, labels) == pytest.approx(np.mean(probs.argmax(axis=1) == labels))
    assert threshold_counts(probs, labels, 0.0).rejected == 0
    assert accuracy(PROBS, LABELS, tau=0.0) == pytest.approx(4 / 5)


def test_tau_one_rejects_all_but_certain_predictions() -> None:
    probs = np.array([[1.0, 0.0], [0.6, 0.4]])
    counts = threshold_counts(probs, np.array([0, 0]), tau=1.0)
    assert (counts.accepted_correct, counts.rejected) == (1, 1)


def test_attack_success_rate_hand_computed() -> None:
    # Target 0: argmax 0 on rows 0, 2, 4 with conf 0.90, 0.40, 0.34.
    assert attack_success_rate(PROBS, target=0) == pytest.approx(3 / 5)
    assert attack_success_rate(PROBS, target=0, tau=0.4) == pytest.approx(2 / 5)
    assert attack_success_rate(PROBS, target=0, tau=0.95) == 0.0
    assert attack_success_rate(PROBS, target=2) == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="target"):
        attack_success_rate(PROBS, target=3)


def test_many_equals_single_and_partitions_total() -> None:
    rng = np.random.default_rng(1)
    probs = _random_probs(rng, 300, 10)
    labels = rng.integers(0, 10, size=300)
    taus = [0.9, 0.0, 0.3, 0.3, 1.0, float(confidence(probs)[7])]
    many = threshold_counts_many(probs, labels, taus)
    assert [c.tau for c in many] == taus
    for tau, counts in zip(taus, many, strict=True):
        conf = probs.max(axis=1)
        accepted = conf >= tau
        correct = probs.argmax(axis=1) == labels
        assert counts == threshold_counts(probs, labels, tau)
        assert counts.accepted_correct == np.sum(accepted & correct)
        assert counts.accepted_wrong == np.sum(accepted & ~correct)
        assert (
            counts.accepted_correct + counts.accepted_wrong + counts.rejected == counts.total == 300
        )


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    c=st.integers(2, 12),
    taus=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=8),
)
def test_counts_monotone_in_tau(seed: int, n: int, c: int, taus: list[float]) -> None:
    rng = np.random.default_rng(seed)
    probs = _random_probs(rng, n, c, scale=rng.uniform(0.1, 5.0))
    labels = rng.integers(0, c, size=n)
    ordered = sorted(taus)
    counts = threshold_counts_many(probs, labels, ordered)
    for lower, higher in itertools.pairwise(counts):
        assert higher.accepted_correct <= lower.accepted_correct
        assert higher.accepted_wrong <= lower.accepted_wrong
        assert higher.rejected >= lower.rejected
    for item in counts:
        assert item.accepted_correct + item.accepted_wrong + item.rejected == n


def test_softmax_is_stable_and_normalised() -> None:
    logits = np.array([[1000.0, 999.0, -1000.0], [0.0, 0.0, 0.0]])
    probs = softmax(logits)
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert probs[0, 0] == pytest.approx(np.e / (np.e + 1))
    np.testing.assert_allclose(probs[1], 1 / 3)
    # Shift invariance.
    np.testing.assert_allclose(softmax(logits + 7.0), probs)
    with pytest.raises(ValueError, match="finite"):
        softmax(np.array([[np.nan, 0.0]]))


def test_confidence_is_row_max() -> None:
    np.testing.assert_allclose(confidence(PROBS), [0.90, 0.70, 0.40, 0.60, 0.34])


@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        (np.array([0.5, 0.5]), np.array([0]), "2-D"),
        (np.array([[0.5, 0.6]]), np.array([0]), "sum to 1"),
        (np.array([[2.0, -1.0]]), np.array([0]), "negative"),
        (np.array([[np.nan, 1.0]]), np.array([0]), "NaN"),
        (np.array([[0.5, 0.5]]), np.array([2]), r"labels must be in 0\.\.1"),
        (np.array([[0.5, 0.5]]), np.array([-1]), r"labels must be in 0\.\.1"),
        (np.array([[0.5, 0.5]]), np.array([0, 1]), "shape"),
        (np.array([[0.5, 0.5]]), np.array([0.0]), "integers"),
    ],
)
def test_bad_inputs_raise(probs: np.ndarray, labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        threshold_counts(probs, labels, 0.5)


@pytest.mark.parametrize("tau", [-0.1, 1.1, float("nan")])
def test_bad_tau_raises(tau: float) -> None:
    with pytest.raises(ValueError, match=r"tau must be in \[0, 1\]"):
        threshold_counts(PROBS, LABELS, tau)


def test_logits_are_rejected_with_hint() -> None:
    with pytest.raises(ValueError, match="softmax"):
        accuracy(np.array([[3.0, -1.0, 0.5]]), np.array([0]))


# --- ROC / AUC -----------------------------------------------------------------------------------


def test_roc_hand_computed() -> None:
    clean = np.array([0.9, 0.8, 0.6])
    backdoor = np.array([0.5, 0.8])
    fpr, tpr, thresholds = roc_curve(clean, backdoor)
    np.testing.assert_array_equal(thresholds, [0.5, 0.6, 0.8, 0.9, np.inf])
    # Flag conf < t:   t=0.5 none; t=0.6 b0.5; t=0.8 b0.5,c0.6; t=0.9 +c0.8,b0.8; inf all.
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    # Mann-Whitney: pairs (b, c) with b < c count 1, ties 1/2.
    # b=0.5: 3 clean above -> 3; b=0.8: 0.9 above (1) + tie with 0.8 (1/2) -> 1.5. Total 4.5 / 6.
    assert auc(clean, backdoor) == pytest.approx(0.75)
    assert np.trapezoid(tpr, fpr) == pytest.approx(0.75)


def test_auc_perfect_and_identical() -> None:
    clean = np.linspace(0.7, 1.0, 50)
    backdoor = np.linspace(0.1, 0.69, 40)
    assert auc(clean, backdoor) == 1.0
    assert auc(backdoor, clean) == 0.0
    assert auc(clean, clean) == pytest.approx(0.5)
    assert auc(np.full(5, 0.3), np.full(9, 0.3)) == pytest.approx(0.5)


def test_roc_thresholds_agree_with_threshold_counts() -> None:
    """A finite ROC threshold used as tau rejects exactly the flagged fraction."""
    rng = np.random.default_rng(2)
    probs = _random_probs(rng, 200, 10)
    conf = confidence(probs)
    clean_probs, backdoor_probs = probs[:120], probs[120:]
    fpr, tpr, thresholds = roc_curve(conf[:120], conf[120:])
    for index in [0, 5, 37, len(thresholds) - 2]:
        tau = float(thresholds[index])
        assert threshold_counts(
            clean_probs, np.zeros(120, int), tau
        ).rejected / 120 == pytest.approx(fpr[index])
        assert threshold_counts(
            backdoor_probs, np.zeros(80, int), tau
        ).rejected / 80 == pytest.approx(tpr[index])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_clean=st.integers(1, 40),
    n_backdoor=st.integers(1, 40),
    levels=st.integers(2, 30),
)
def test_auc_equals_trapezoid_area_with_ties(
    seed: int, n_clean: int, n_backdoor: int, levels: int
) -> None:
    rng = np.random.default_rng(seed)
    # Few distinct levels force many ties.
    clean = rng.integers(0, levels, size=n_clean) / levels
    backdoor = rng.integers(0, levels, size=n_backdoor) / levels
    fpr, tpr, thresholds = roc_curve(clean, backdoor)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert (
        np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thresholds) > 0)
    )
    area = np.trapezoid(tpr, fpr)
    assert auc(clean, backdoor) == pytest.approx(area, abs=1e-12)
    # Brute-force Mann-Whitney over all pairs.
    pairs = (backdoor[:, None] < clean[None, :]) + 0.5 * (backdoor[:, None] == clean[None, :])
    assert auc(clean, backdoor) == pytest.approx(pairs.mean(), abs=1e-12)


def test_roc_rejects_empty_or_nan() -> None:
    with pytest.raises(ValueError, match="conf_clean"):
        roc_curve(np.array([]), np.array([0.5]))
    with pytest.raises(ValueError, match="conf_backdoor"):
        auc(np.array([0.5]), np.array([np.nan]))
