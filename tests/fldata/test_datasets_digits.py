"""scikit-learn digits: the seeded split, the pixel scaling, and the error when scikit-learn is
absent (simulated: scikit-learn is in the test extra, so the real data set is loaded too)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from fldata.datasets import DataNotFoundError, load_dataset
from fldata.datasets._digits import split_indices


def test_split_is_seeded_disjoint_and_complete() -> None:
    train, test = split_indices(1797, 0.2, seed=0)
    assert len(test) == 359 and len(train) == 1438
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    again_train, again_test = split_indices(1797, 0.2, seed=0)
    assert np.array_equal(train, again_train) and np.array_equal(test, again_test)
    assert not np.array_equal(test, split_indices(1797, 0.2, seed=1)[1])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        split_indices(10, 1.0, seed=0)


def test_missing_scikit_learn_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # what an environment without it imports
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(
        DataNotFoundError,
        match="needs scikit-learn, which is not installed: pip install scikit-learn",
    ):
        load_dataset("digits")


def test_digits_conversion_with_a_stand_in_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs without scikit-learn: a stand-in load_digits with the real value range 0..16."""
    rng = np.random.default_rng(0)
    values = rng.integers(0, 17, size=(50, 8, 8)).astype(np.float64)
    values[0, 0, :3] = (0, 8, 16)
    target = np.arange(50) % 10
    fake = types.ModuleType("sklearn.datasets")
    fake.load_digits = lambda: types.SimpleNamespace(images=values, target=target)
    monkeypatch.setitem(sys.modules, "sklearn", types.ModuleType("sklearn"))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", fake)
    digits = load_dataset("digits")
    assert digits.x_train.shape == (40, 8, 8) and digits.x_test.shape == (10, 8, 8)
    assert digits.x_train.dtype == np.uint8 and digits.y_train.dtype == np.int64
    train, test = split_indices(50, 0.2, seed=0)
    assert np.array_equal(digits.y_test, target[test])
    np.testing.assert_array_equal(digits.x_test, np.rint(values[test] * 255 / 16))
    first = digits.x_train[0] if 0 in train else digits.x_test[0]
    assert first[0, :3].tolist() == [0, 128, 255]


@pytest.mark.slow
def test_real_digits() -> None:  # scikit-learn is in the test extra
    digits = load_dataset("digits")
    assert len(digits.x_train) + len(digits.x_test) == 1797 and digits.image_shape == (1, 8, 8)
