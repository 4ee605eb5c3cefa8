"""Who trains in a round and who attacks (ALGORITHMS.md, "Federated setup", attack schedules).

- Clean rounds (pre-training, and rounds outside the attack schedule): ``clients_per_round``
  clients drawn uniformly without replacement from all clients; everyone trains benignly.
- Continuous attack: in every round of [start, end], ``per_round`` scheduled attackers
  (all 4 in the paper) join, the other seats go to benign clients drawn at random.
- Single-shot attack: in each listed round (MNIST released: 12, 14, 16, 18) ONE attacker joins,
  attacker k in the k-th attack round, and its update is scaled by ``attack.scale`` (model
  replacement, 100 = n / eta_g).
- ``selection = "random"``: in attack rounds all seats are drawn at random from all clients and the
  attackers that happen to be drawn attack.
Attacker k (its index among the attackers) trains with DBA trigger piece k mod 4, or the full
trigger with ``attack.trigger = "full"``; the test trigger is always the full one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deepfl.config import ExperimentConfig
from deepfl.seeding import ATTACKER_IDS, SAMPLING, numpy_rng
from fldata.triggers import Trigger, dba_trigger

NUM_DBA_PIECES = 4


@dataclass(frozen=True)
class RoundPlan:
    """Participants of one round: ``clients`` in training order; ``attackers`` maps client ->
    attacker index.
    """

    round: int
    phase: str  # "pretrain" | "attack"
    clients: list[int]
    attackers: dict[int, int] = field(default_factory=dict)


class AttackSchedule:
    """Derives each round's participants from (seed, round) alone, so resumption is exact."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        attack = cfg.attack
        num_attackers = attack.num_attackers if attack.kind != "none" else 0
        rng = numpy_rng(cfg.seed, ATTACKER_IDS)
        self.attacker_ids: list[int] = [
            int(c) for c in rng.choice(cfg.data.num_clients, num_attackers, replace=False)
        ]

    def is_attack_round(self, round_index: int) -> bool:
        cfg = self.cfg
        if cfg.attack.kind == "none" or round_index <= cfg.run.pretrain_rounds:
            return False
        if cfg.attack.kind == "single-shot":
            return round_index in cfg.single_shot_rounds
        return cfg.attack_start <= round_index <= cfg.attack_end

    def _scheduled_attackers(self, round_index: int) -> list[int]:
        """Attacker indices joining attack round ``round_index`` under ``selection =
        "schedule"``.
        """
        cfg = self.cfg
        if cfg.attack.kind == "single-shot":
            position = cfg.single_shot_rounds.index(round_index)
            return [position % len(self.attacker_ids)]
        per_round = cfg.attackers_per_round
        position = round_index - cfg.attack_start
        return [(position * per_round + j) % len(self.attacker_ids) for j in range(per_round)]

    def plan(self, round_index: int) -> RoundPlan:
        cfg = self.cfg
        phase = "pretrain" if round_index <= cfg.run.pretrain_rounds else "attack"
        rng = numpy_rng(cfg.seed, round_index, SAMPLING)
        seats = cfg.server.clients_per_round
        if not self.is_attack_round(round_index) or cfg.attack.selection == "random":
            clients = [int(c) for c in rng.choice(cfg.data.num_clients, seats, replace=False)]
            attackers = {}
            if self.is_attack_round(round_index):
                attackers = {
                    c: self.attacker_ids.index(c) for c in clients if c in self.attacker_ids
                }
            return RoundPlan(round_index, phase, clients, attackers)
        indices = self._scheduled_attackers(round_index)
        attacking = [self.attacker_ids[k] for k in indices]
        benign_pool = np.setdiff1d(np.arange(cfg.data.num_clients), self.attacker_ids)
        benign = [int(c) for c in rng.choice(benign_pool, seats - len(attacking), replace=False)]
        return RoundPlan(
            round_index, phase, attacking + benign, dict(zip(attacking, indices, strict=True))
        )


def attacker_trigger(
    cfg: ExperimentConfig, image_shape: tuple[int, int, int], attacker_index: int
) -> Trigger:
    """Trigger attacker ``attacker_index`` trains with: DBA piece k mod 4, or the full trigger."""
    pieces = attacker_index % NUM_DBA_PIECES if cfg.attack.trigger == "dba" else None
    return dba_trigger(image_shape, pieces=pieces, scale=cfg.attack.trigger_scale)


def full_trigger(cfg: ExperimentConfig, image_shape: tuple[int, int, int]) -> Trigger:
    """The full (all-pieces) trigger stamped on test images to measure ASR."""
    return dba_trigger(image_shape, pieces=None, scale=cfg.attack.trigger_scale)
