"""The FLIP paper's published numbers that our figures and tables are compared with.

Every constant is copied from the paper (ICLR 2023, arXiv 2210.12873; /work/shared/paper/FLIP-paper.txt)
and cites its table; Table 3 and the Table 4 totals are taken from :mod:`theory.paper_reference`, their one
copy in the project (numpy-only, no heavy theory code). Rates are percentages, counts are sample counts.
Defense keys are the names our runs use (``deepfl.defenses.REGISTRY`` names, ``"none"`` for plain FedAvg, ``"flip"`` for FLIP).
"""
from __future__ import annotations

from typing import NamedTuple

from theory import paper_reference  # numpy-only module: the single copy of Table 3 and its totals


class AccAsr(NamedTuple):
    """Main-task accuracy and attack success rate, both in percent."""

    acc: float
    asr: float


class Table4Counts(NamedTuple):
    """Table 4 counts: N^acc (clean correct and accepted), N^asr (backdoor -> target and accepted)."""

    n_acc: int
    n_asr: int


# Display names of the defenses, in the row order of Tables 1-2.
DEFENSE_LABELS: dict[str, str] = {
    "none": "No Defense",
    "krum": "Krum",
    "bulyan_krum": "Bulyan Krum",
    "rfa": "RFA",
    "trimmed_mean": "Trimmed Mean",
    "bulyan_trimmed_mean": "Buly-Trim-M",
    "foolsgold": "FoolsGold",
    "median": "Median",
    "fltrust": "FLTrust",
    "dnc": "DnC",
    "flip": "FLIP",
}

# Table 1 (paper section 5.2): single-shot attack, MNIST columns (ACC, ASR in %).
TABLE1_MNIST_SINGLE_SHOT: dict[str, AccAsr] = {
    "none": AccAsr(97.55, 80.12),
    "krum": AccAsr(97.50, 0.35),
    "bulyan_krum": AccAsr(97.76, 0.39),
    "rfa": AccAsr(97.93, 0.39),
    "trimmed_mean": AccAsr(97.81, 0.38),
    "bulyan_trimmed_mean": AccAsr(97.02, 90.75),
    "foolsgold": AccAsr(97.51, 0.39),
    "median": AccAsr(97.76, 0.37),
    "fltrust": AccAsr(97.26, 0.48),
    "dnc": AccAsr(97.61, 0.46),
    "flip": AccAsr(96.05, 0.13),
}

# Table 2 (paper section 5.2): continuous attack, MNIST columns (ACC, ASR in %).
TABLE2_MNIST_CONTINUOUS: dict[str, AccAsr] = {
    "none": AccAsr(98.71, 100.00),
    "krum": AccAsr(97.59, 0.14),
    "bulyan_krum": AccAsr(98.15, 94.01),
    "rfa": AccAsr(98.54, 100.00),
    "trimmed_mean": AccAsr(98.52, 100.00),
    "bulyan_trimmed_mean": AccAsr(98.80, 100.00),
    "foolsgold": AccAsr(97.91, 99.99),
    "median": AccAsr(98.14, 66.01),
    "fltrust": AccAsr(91.96, 20.60),
    "dnc": AccAsr(89.81, 99.78),
    "flip": AccAsr(96.62, 1.93),
}

# Tables 1-2 by attack name (the attack names our configs use).
DEEP_MNIST_BY_ATTACK: dict[str, dict[str, AccAsr]] = {
    "single-shot": TABLE1_MNIST_SINGLE_SHOT,
    "continuous": TABLE2_MNIST_CONTINUOUS,
}

# Table 3 (paper section 5.3): logistic regression on MNIST, (ACC, ASR in %) without and with FLIP.
# The numbers live in theory.paper_reference.TABLE3 (one copy); here as AccAsr pairs.
TABLE3_LOGREG: dict[str, dict[str, AccAsr]] = {
    attack: {side: AccAsr(*pair) for side, pair in sides.items()}
    for attack, sides in paper_reference.TABLE3.items()
}

# Table 4 (paper appendix A.2): sample counts of the same experiment, as printed. The totals are 10000
# clean test images and 9020 poisoned ones (test images whose label is not the target 0; THEORY.md
# section 7.4); each printed count equals round(Table 3 % x total).
TABLE4_CLEAN_TOTAL: int = paper_reference.CLEAN_TOTAL
TABLE4_BACKDOOR_TOTAL: int = paper_reference.BACKDOOR_TOTAL
TABLE4_COUNTS: dict[str, dict[str, Table4Counts]] = {
    "single-shot": {"no_defense": Table4Counts(8843, 5816), "defense": Table4Counts(8458, 476)},
    "continuous": {"no_defense": Table4Counts(8303, 5753), "defense": Table4Counts(8076, 442)},
}
