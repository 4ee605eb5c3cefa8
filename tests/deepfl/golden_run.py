"""Fixed-seed micro deep runs whose metrics must not change under refactoring.

``python tests/deepfl/golden_run.py`` (from the repository root) writes the stored outputs
``tests/deepfl/data/micro_runs_golden.json`` and the torch CPU capability they were made with
(``micro_runs_golden.cpu.json``); ``test_golden_run.py`` reruns the same runs and
compares every metrics row (without its wall-clock ``seconds``) and the summary's numbers exactly,
on a machine with that capability.
Regenerate only when a change is MEANT to change the numbers, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

GOLDEN_PATH = Path(__file__).parent / "data" / "micro_runs_golden.json"
# torch.backends.cpu.get_cpu_capability() where GOLDEN_PATH was written, recorded beside it by
# main(): float32 kernels (and so the stored numbers) differ bitwise between AVX-512 and AVX2
CAPABILITY_PATH = GOLDEN_PATH.with_suffix(".cpu.json")

# FLIP at micro size: few inversion steps, small inversion batches
_FLIP_MICRO = {"warmup_steps": 8, "pair_steps": 6, "focus_refresh_steps": 6, "batch_size": 16}

# run name -> its defense section: a plain mean, a row-selecting rule, a seeded clustering rule,
# and FLIP on the benign clients in two of its modes
DEFENSES: dict[str, dict[str, Any]] = {
    "fedavg": {"server": "fedavg"},
    "krum": {"server": "krum"},
    "flame": {"server": "flame"},
    "flip+paper": {
        "server": "fedavg",
        "client": "flip",
        "client_params": {"mode": "paper", **_FLIP_MICRO},
    },
    "flip+fliplab": {
        "server": "fedavg",
        "client": "flip",
        "client_params": {"mode": "fliplab", **_FLIP_MICRO},
    },
}
TAUS = [0.0, 0.3, 0.5]
SUMMARY_KEYS = ("rounds", "final", "max_asr", "attack", "defense", "attacker_ids")


def run_micro(name: str, defense: dict[str, Any], folder: Path) -> dict[str, Any]:
    """One micro run (``engine_fixtures.micro_config``, continuous attack) with the ``defense``
    section in ``folder / name`` (pre-training cache ``folder / "cache"``, shared by the runs): its
    metrics rows without ``seconds`` and the summary's entries that hold no timing or digest."""
    from engine_fixtures import comparable, micro_config, single_thread

    from deepfl.io import read_jsonl
    from deepfl.runner import METRICS_NAME, Experiment

    cfg = micro_config(
        folder,
        defense=defense,
        data={"train_limit": 2000},
        benign={"epochs": 2},
        server={"clients_per_round": 5, "rule": "sample-weighted"},
        attack={"scale": 3.0},
        run={"taus": TAUS, "rounds": 4, "pretrain_rounds": 2},
    )
    with single_thread():
        summary = Experiment(cfg, folder / name).run()
    assert summary is not None
    rows = comparable(read_jsonl(folder / name / METRICS_NAME))
    return {"rows": rows, "summary": {key: summary[key] for key in SUMMARY_KEYS}}


def golden_outputs(folder: Path) -> dict[str, Any]:
    """``{name: run_micro(name, ...)}`` for every run of :data:`DEFENSES`, in ``folder``
    (the first run pre-trains, the others start from its cached pre-training)."""
    outputs = {name: run_micro(name, defense, folder) for name, defense in DEFENSES.items()}
    # exactly what a JSON file gives back (tuples become lists, ...)
    return json.loads(json.dumps(outputs, sort_keys=True))


def main() -> None:
    """Write :data:`GOLDEN_PATH` from the current code."""
    import deepfl

    print(f"deepfl from {deepfl.__file__}")
    GOLDEN_PATH.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        outputs = golden_outputs(Path(folder))
    GOLDEN_PATH.write_text(json.dumps(outputs, indent=1, sort_keys=True) + "\n")
    import torch

    capability = {"torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    CAPABILITY_PATH.write_text(json.dumps(capability) + "\n")
    print(f"wrote {GOLDEN_PATH} and {CAPABILITY_PATH}")


def stored_cpu_capability() -> str:
    """The torch CPU capability of the machine that wrote :data:`GOLDEN_PATH`."""
    return json.loads(CAPABILITY_PATH.read_text())["torch_cpu_capability"]


if __name__ == "__main__":
    sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[2])]
    main()
