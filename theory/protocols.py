"""Named protocols of ``python -m theory.verify --protocol NAME``: ``LinearFLConfig`` overrides and
the round.

* ``default``: the engine's protocol (THEORY.md section 10): full-batch gradient descent with lr
  0.3, one local step, 20 of every 64 malicious samples poisoned, weights 1/2 each, round 50.
* ``paper-table3``: the setting whose **no-defense** ACC/ASR come closest to the paper's Table 3,
  found by the scan of ``python -m theory.table3_gaps`` (``results/theory/table3-gaps.md``, table
  B). The paper states neither its logistic-regression hyper-parameters nor the round it reports,
  and in the engine the undefended backdoor never settles near the paper's ASR: it keeps growing
  towards 100% in every protocol scanned, because only the attacker trains the 16 trigger weights
  (1.8% of MNIST training images have any ink under the trigger). So the match is a moment on the
  way up:

  - continuous: ``poison_fraction = 0.6`` at round 5 (paper 83.03 / 63.78 at tau 0.4);
  - single-shot: ``poison_fraction = 0.2`` with the paper's E = 10 poison epochs, poisoning at round
    50 (paper 88.43 / 64.48 at tau 0).

  These values are fitted, not the authors'; the FLIP side is then measured, not fitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ATTACKS = ("continuous", "single-shot")


@dataclass(frozen=True)
class Protocol:
    """Config overrides per attack and the round ``--round`` defaults to."""

    name: str
    summary: str
    overrides: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # attack -> LinearFLConfig fields
    rounds: dict[str, int] = field(default_factory=dict)  # attack -> default --round

    def config(self, attack: str) -> dict[str, Any]:
        """The ``LinearFLConfig`` fields this protocol sets for ``attack``."""
        if attack not in ATTACKS:
            raise ValueError(f"unknown attack {attack!r}; choose one of {ATTACKS}")
        return dict(self.overrides.get(attack, {}))

    def round(self, attack: str) -> int:
        """The round ``R`` this protocol reports by default (50 unless it says otherwise)."""
        return self.rounds.get(attack, 50)


PROTOCOLS: dict[str, Protocol] = {
    "default": Protocol("default", "the engine's protocol (THEORY.md 10)"),
    "paper-table3": Protocol(
        "paper-table3",
        "fitted to the paper's no-defense pair: continuous poison 0.6 at round 5, single-shot "
        "poison 0.2",
        overrides={"continuous": {"poison_fraction": 0.6}, "single-shot": {"poison_fraction": 0.2}},
        rounds={"continuous": 5},
    ),
}
