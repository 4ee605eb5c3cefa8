"""A micro federated config for the engine tests: real MNIST slice, 6 clients, 3 rounds (seconds on
CPU).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from deepfl.config import ExperimentConfig, merge, resolve
from deepfl.presets import preset


def micro_config(tmp_path: Path, **sections: dict[str, Any]) -> ExperimentConfig:
    """The ``micro`` preset shrunk further, cache under ``tmp_path``; ``sections`` override it."""
    layer: dict[str, Any] = {
        "device": "cpu",
        "data": {"train_limit": 800, "test_limit": 300, "num_clients": 6, "min_client_size": 20},
        "server": {"clients_per_round": 3, "root_set_size": 100},
        "attack": {"kind": "continuous", "num_attackers": 2, "per_round": 1, "epochs": 1},
        "run": {
            "rounds": 3,
            "pretrain_rounds": 1,
            "checkpoint_every": 1,
            "taus": [0.0, 0.5],
            "cache_dir": str(tmp_path / "cache"),
            "progress": False,
            "threads": 1,
        },
    }
    for name, values in sections.items():
        layer = merge(layer, {name: values})
    return resolve(preset("micro"), layer)


def comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metric rows without wall-clock timings (the only field allowed to differ between runs)."""
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run tiny models on one intra-op thread (two threads thrash on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
