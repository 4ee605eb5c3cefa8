"""Tests for fldata.partition: exact coverage, determinism, Dirichlet statistics on real MNIST
labels.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fldata.datasets import load_dataset
from fldata.partition import (
    dirichlet_partition,
    iid_partition,
    label_distribution,
    two_client_split,
)

NUM_CLASSES = 10


@lru_cache(maxsize=1)
def mnist_train_labels() -> np.ndarray:
    """The 60,000 real MNIST training labels (int64), via fldata.datasets (data from
    FLIPLAB_DATA).
    """
    return np.asarray(load_dataset("mnist").y_train, dtype=np.int64)


def _assert_exact_cover(parts: list[np.ndarray], num_samples: int) -> None:
    assert all(part.dtype == np.int64 and part.ndim == 1 for part in parts)
    assert all(np.all(np.diff(part) > 0) for part in parts)  # sorted, no duplicates within a client
    joined = np.concatenate(parts)
    assert joined.size == num_samples  # no duplicates across clients given the next line
    np.testing.assert_array_equal(np.sort(joined), np.arange(num_samples))


def _mean_client_entropy(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    counts = label_distribution(labels, parts, NUM_CLASSES).astype(float)
    counts = counts[counts.sum(axis=1) > 0]
    proportions = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(proportions > 0, proportions * np.log(proportions), 0.0)
    return float(-terms.sum(axis=1).mean())


# --- Dirichlet -----------------------------------------------------------------------------------


def test_mnist_labels_are_real() -> None:
    labels = mnist_train_labels()
    assert labels.shape == (60000,)
    # Official MNIST training class counts.
    np.testing.assert_array_equal(
        np.bincount(labels), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    )


def test_dirichlet_covers_mnist_exactly_once() -> None:
    labels = mnist_train_labels()
    parts = dirichlet_partition(labels, num_clients=100, alpha=0.5, seed=0)
    assert len(parts) == 100
    _assert_exact_cover(parts, labels.size)
    # Per class, the clients together hold exactly that class's own count.
    per_class_total = label_distribution(labels, parts, NUM_CLASSES).sum(axis=0)
    np.testing.assert_array_equal(per_class_total, np.bincount(labels))


def test_small_alpha_skews_and_large_alpha_is_near_iid() -> None:
    labels = mnist_train_labels()
    skewed = dirichlet_partition(labels, num_clients=20, alpha=0.1, seed=1)
    near_iid = dirichlet_partition(labels, num_clients=20, alpha=100.0, seed=1)
    entropy_skewed = _mean_client_entropy(labels, skewed)
    entropy_near_iid = _mean_client_entropy(labels, near_iid)
    assert entropy_near_iid > 0.98 * np.log(NUM_CLASSES)
    assert entropy_skewed < 0.5 * entropy_near_iid
    # Large alpha: every client's label proportions are close to the global ones.
    counts = label_distribution(
        labels, dirichlet_partition(labels, 10, alpha=1000.0, seed=2), NUM_CLASSES
    )
    per_client = counts / counts.sum(axis=1, keepdims=True)
    global_proportions = np.bincount(labels) / labels.size
    assert np.abs(per_client - global_proportions).max() < 0.01


def test_class_shares_follow_dirichlet_moments() -> None:
    """Share of class c given to client i ~ Beta(alpha, (N-1) alpha).

    Mean 1/N and variance (1/N)(1-1/N)/(N alpha + 1), the marginal of Dir(alpha * 1_N).
    """
    labels = mnist_train_labels()
    num_clients, alpha = 10, 0.5
    class_sizes = np.bincount(labels)
    shares = np.concatenate(
        [
            label_distribution(
                labels, dirichlet_partition(labels, num_clients, alpha, seed=s), NUM_CLASSES
            ).ravel()
            / np.tile(class_sizes, num_clients)
            for s in range(30)
        ]
    )
    expected_mean = 1 / num_clients
    expected_var = expected_mean * (1 - expected_mean) / (num_clients * alpha + 1)
    assert shares.mean() == pytest.approx(expected_mean, abs=1e-12)  # shares of each class sum to 1
    # Concentration alpha * 1_N: var 0.015. Using alpha * N or alpha / N per client instead would
    # give 0.0018 or 0.06, far outside this tolerance.
    assert shares.var() == pytest.approx(expected_var, rel=0.25)


def test_imbalanced_classes_are_sized_by_their_own_count() -> None:
    """The released code sized every class by class 0's count (DBA bug); here each class is
    complete.
    """
    labels = np.repeat(np.arange(3), [5, 500, 2000])
    parts = dirichlet_partition(labels, num_clients=7, alpha=0.5, seed=3)
    _assert_exact_cover(parts, labels.size)
    np.testing.assert_array_equal(label_distribution(labels, parts, 3).sum(axis=0), [5, 500, 2000])


def test_dirichlet_is_deterministic_by_seed() -> None:
    labels = mnist_train_labels()[:5000]
    first = dirichlet_partition(labels, 30, 0.5, seed=11)
    second = dirichlet_partition(labels, 30, 0.5, seed=11)
    other = dirichlet_partition(labels, 30, 0.5, seed=12)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_min_size_is_honoured_with_redraws() -> None:
    labels = mnist_train_labels()[:3000]
    unconstrained = dirichlet_partition(labels, 30, alpha=0.5, seed=4)
    smallest = min(part.size for part in unconstrained)
    required = smallest + 1  # the first draw fails this, so a redraw is needed
    parts = dirichlet_partition(labels, 30, alpha=0.5, seed=4, min_size=required, max_tries=500)
    assert min(part.size for part in parts) >= required
    _assert_exact_cover(parts, labels.size)


def test_unreachable_min_size_raises() -> None:
    labels = mnist_train_labels()[:1000]
    with pytest.raises(ValueError, match="no draw in 5 tries"):
        dirichlet_partition(labels, 50, alpha=0.01, seed=0, min_size=15, max_tries=5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha must be"),
        ({"alpha": -1.0}, "alpha must be"),
        ({"alpha": float("nan")}, "alpha must be"),
        ({"num_clients": 0}, "num_clients must be"),
        ({"num_clients": 20, "min_size": 6}, "needs 120 samples but there are only 100"),
        ({"min_size": -1}, "min_size must be"),
        ({"max_tries": 0}, "max_tries must be"),
    ],
)
def test_dirichlet_bad_arguments(kwargs: dict, message: str) -> None:
    labels = np.arange(100) % 10
    arguments = {"num_clients": 5, "alpha": 0.5, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        dirichlet_partition(labels, **arguments)


def test_dirichlet_bad_labels() -> None:
    with pytest.raises(ValueError, match="1-D"):
        dirichlet_partition(np.zeros((4, 2), int), 2, 0.5, 0)
    with pytest.raises(ValueError, match="non-negative integers"):
        dirichlet_partition(np.array([0, -1, 2]), 2, 0.5, 0)
    with pytest.raises(ValueError, match="non-negative integers"):
        dirichlet_partition(np.array([0.0, 1.0]), 2, 0.5, 0)


@settings(max_examples=50, deadline=None)
@given(
    num_samples=st.integers(1, 300),
    num_classes=st.integers(1, 12),
    num_clients=st.integers(1, 40),
    alpha=st.floats(0.01, 1000.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_dirichlet_always_covers_exactly(
    num_samples: int, num_classes: int, num_clients: int, alpha: float, seed: int
) -> None:
    labels = np.random.default_rng(seed).integers(0, num_classes, size=num_samples)
    parts = dirichlet_partition(labels, num_clients, alpha, seed)
    assert len(parts) == num_clients
    _assert_exact_cover(parts, num_samples)


# --- IID and two-client split --------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    num_samples=st.integers(1, 2000), num_clients=st.integers(1, 50), seed=st.integers(0, 2**32 - 1)
)
def test_iid_partition_covers_with_balanced_sizes(
    num_samples: int, num_clients: int, seed: int
) -> None:
    if num_clients > num_samples:
        with pytest.raises(ValueError, match="exceeds num_samples"):
            iid_partition(num_samples, num_clients, seed)
        return
    parts = iid_partition(num_samples, num_clients, seed)
    assert len(parts) == num_clients
    _assert_exact_cover(parts, num_samples)
    sizes = [part.size for part in parts]
    assert max(sizes) - min(sizes) <= 1


def test_iid_partition_is_near_global_label_mix_and_seeded() -> None:
    labels = mnist_train_labels()
    parts = iid_partition(labels.size, 10, seed=5)
    counts = label_distribution(labels, parts, NUM_CLASSES)
    per_client = counts / counts.sum(axis=1, keepdims=True)
    assert np.abs(per_client - np.bincount(labels) / labels.size).max() < 0.015
    assert _mean_client_entropy(labels, parts) > 0.99 * np.log(NUM_CLASSES)
    again = iid_partition(labels.size, 10, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not np.array_equal(parts[0], iid_partition(labels.size, 10, seed=6)[0])


def test_iid_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_clients must be"):
        iid_partition(10, 0, seed=0)
    with pytest.raises(ValueError, match="num_samples must be"):
        iid_partition(0, 1, seed=0)


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.75])
def test_two_client_split(fraction: float) -> None:
    benign, malicious = two_client_split(60000, seed=0, fraction=fraction)
    _assert_exact_cover([benign, malicious], 60000)
    assert benign.size == round(fraction * 60000)
    again_benign, _ = two_client_split(60000, seed=0, fraction=fraction)
    np.testing.assert_array_equal(benign, again_benign)
    assert not np.array_equal(benign, two_client_split(60000, seed=1, fraction=fraction)[0])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5, 0.001])
def test_two_client_split_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        two_client_split(100, seed=0, fraction=fraction)
