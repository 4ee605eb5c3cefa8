"""The paper's logistic-regression numbers (Table 3) and the Table 4 arithmetic (THEORY.md section
7.4).

Table 4 entries are ``round(Table-3 % x total)`` with totals 10,000 clean test images and 9,020
backdoor images (= MNIST test images whose label is not the target; 9,020 means target class 0).
So Table 4 lists ``N^{acc}`` and ``N^{asr}`` (accepted and correct/target), not rejection counts.
"""

from __future__ import annotations

import numpy as np

ATTACKS: tuple[str, ...] = ("single-shot", "continuous")
CLEAN_TOTAL = 10_000
BACKDOOR_TOTAL = 9_020
# Table 3 (logistic regression on MNIST): (ACC %, ASR %) without and with the FLIP defense.
TABLE3: dict[str, dict[str, tuple[float, float]]] = {
    "single-shot": {"no_defense": (88.43, 64.48), "defense": (84.58, 5.28)},
    "continuous": {"no_defense": (83.03, 63.78), "defense": (80.76, 4.90)},
}


def implied_count(percent: float, total: int) -> int:
    """``round(percent / 100 * total)``: the count a percentage of ``total`` samples stands for."""
    if not 0.0 <= percent <= 100.0 or total < 0:
        raise ValueError(f"need 0 <= percent <= 100 and total >= 0, got {percent}, {total}")
    return int(round(percent / 100.0 * total))


def table4(
    attack: str, clean_total: int = CLEAN_TOTAL, backdoor_total: int = BACKDOOR_TOTAL
) -> dict[str, dict[str, int]]:
    """Table 4 reconstructed from Table 3: ``{"no_defense"|"defense": {"n_acc", "n_asr"}}``."""
    if attack not in TABLE3:
        raise ValueError(f"unknown attack {attack!r}; choose one of {ATTACKS}")
    return {
        setting: {
            "n_acc": implied_count(acc, clean_total),
            "n_asr": implied_count(asr, backdoor_total),
        }
        for setting, (acc, asr) in TABLE3[attack].items()
    }


def backdoor_total(test_labels: np.ndarray, target: int) -> int:
    """Size of the backdoor test set: test images whose label is not ``target``."""
    return int(np.count_nonzero(np.asarray(test_labels) != target))


def targets_matching(test_labels: np.ndarray, total: int = BACKDOOR_TOTAL) -> list[int]:
    """Classes whose backdoor test set has exactly ``total`` images (MNIST: [0] for 9,020)."""
    labels = np.asarray(test_labels)
    return [int(k) for k in np.unique(labels) if backdoor_total(labels, int(k)) == total]
