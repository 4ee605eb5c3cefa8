"""The paper's constants are consistent with each other (THEORY.md section 7.4, Tables 1-4)."""

from __future__ import annotations

from figures.paper_numbers import (
    DEFENSE_LABELS,
    TABLE1_MNIST_SINGLE_SHOT,
    TABLE2_MNIST_CONTINUOUS,
    TABLE3_LOGREG,
    TABLE4_BACKDOOR_TOTAL,
    TABLE4_CLEAN_TOTAL,
    TABLE4_COUNTS,
)


def test_printed_table4_equals_table3_percent_times_total():
    for attack, sides in TABLE4_COUNTS.items():
        for side, counts in sides.items():
            rates = TABLE3_LOGREG[attack][side]
            assert counts.n_acc == round(rates.acc / 100 * TABLE4_CLEAN_TOTAL)
            assert counts.n_asr == round(rates.asr / 100 * TABLE4_BACKDOOR_TOTAL)


def test_tables_1_2_cover_the_same_defenses_with_rates_in_percent():
    for table in (TABLE1_MNIST_SINGLE_SHOT, TABLE2_MNIST_CONTINUOUS):
        assert list(table) == list(DEFENSE_LABELS)
        assert all(0 <= value <= 100 for row in table.values() for value in row)
    # Paper section 5.2: single-shot, "FLIP outperforms all the baselines on MNIST" (lowest ASR).
    assert (
        min(TABLE1_MNIST_SINGLE_SHOT, key=lambda name: TABLE1_MNIST_SINGLE_SHOT[name].asr) == "flip"
    )
