"""THEORY.md section 8, check 20: Table 4 arithmetic and 9020 <-> target 0 on the real MNIST
labels.
"""

from __future__ import annotations

import numpy as np
import pytest

from theory.paper_reference import (
    BACKDOOR_TOTAL,
    TABLE3,
    backdoor_total,
    implied_count,
    table4,
    targets_matching,
)


def test_table4_entries():
    # Table 4 as printed in the paper (THEORY.md 7.4)
    assert table4("single-shot") == {
        "no_defense": {"n_acc": 8843, "n_asr": 5816},
        "defense": {"n_acc": 8458, "n_asr": 476},
    }
    assert table4("continuous") == {
        "no_defense": {"n_acc": 8303, "n_asr": 5753},
        "defense": {"n_acc": 8076, "n_asr": 442},
    }
    neutralised = {
        a: table4(a)["no_defense"]["n_asr"] - table4(a)["defense"]["n_asr"] for a in TABLE3
    }
    assert neutralised == {"single-shot": 5340, "continuous": 5311}
    lost = {a: table4(a)["no_defense"]["n_acc"] - table4(a)["defense"]["n_acc"] for a in TABLE3}
    assert lost == {"single-shot": 385, "continuous": 227}


def test_implied_count_validation():
    assert implied_count(50.0, 9) == 4  # round half to even
    with pytest.raises(ValueError):
        implied_count(101.0, 10)
    with pytest.raises(ValueError, match="attack"):
        table4("dba")


def test_mnist_backdoor_total_means_target_zero():
    from fldata.datasets import load_dataset

    try:
        data = load_dataset("mnist")
    except FileNotFoundError as exc:  # DataNotFoundError subclasses FileNotFoundError
        pytest.skip(f"MNIST not available: {exc}")
    counts = np.bincount(data.y_test, minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert targets_matching(data.y_test) == [0]
    assert backdoor_total(data.y_test, 0) == BACKDOOR_TOTAL
    assert backdoor_total(data.y_test, 2) == 8968
