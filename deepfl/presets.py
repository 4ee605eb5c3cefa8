"""Named config layers for ``python -m deepfl.run --preset NAME`` (see deepfl.config for layering).

- ``paper``: the paper's scale (ALGORITHMS.md): 100 clients, Dirichlet(0.5), 10 per round,
  MNIST pre-training to round 10 and attack rounds 11-100 (F-MNIST / CIFAR: 200 then 201-300,
  from the dataset defaults).
- ``cpu-small``: minutes on 2 CPU cores (about an hour with FLIP): MNIST subset (12k train / 2k
  test), 20 clients, 10 per round, 10 clean pre-training rounds, then 60 attack rounds, with the
  released global learning rate eta_g = 0.1 (single-shot scale n / eta_g = 100). At this eta_g the
  continuous backdoor takes hold over tens of attack rounds, as at the paper's scale; the
  measurements and the harsher eta_g = 1 alternative are in ``results/cpu-small/NOTES.md``.
- ``micro``: seconds, for tests: 6 clients, 2 000 training images, 3 rounds.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "data": {
            "num_clients": 100,
            "partition": "dirichlet",
            "alpha": 0.5,
            "train_limit": 0,
            "test_limit": 0,
        },
        "server": {"clients_per_round": 10, "rule": "global-lr", "global_lr": 0.1},
        "attack": {"num_attackers": 4, "per_round": 4},
    },
    "cpu-small": {
        "data": {
            "num_clients": 20,
            "partition": "dirichlet",
            "alpha": 0.5,
            "train_limit": 12000,
            "test_limit": 2000,
        },
        "server": {"clients_per_round": 10, "global_lr": 0.1},
        "run": {"rounds": 70, "pretrain_rounds": 10, "eval_every": 1, "checkpoint_every": 5},
    },
    "micro": {
        "data": {"num_clients": 6, "train_limit": 2000, "test_limit": 500, "min_client_size": 20},
        "server": {"clients_per_round": 4},
        "attack": {"num_attackers": 2, "per_round": 2, "epochs": 1},
        "run": {
            "rounds": 3,
            "pretrain_rounds": 1,
            "eval_every": 1,
            "checkpoint_every": 1,
            "progress": False,
        },
    },
}


def preset(name: str) -> dict[str, Any]:
    """Return the raw config layer of preset ``name``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]
