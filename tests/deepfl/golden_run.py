"""Fixed-seed micro deep runs whose metrics must not change under refactoring.

``python tests/deepfl/golden_run.py`` (from the repository root) writes the stored outputs
``tests/deepfl/data/micro_runs_golden.json``; ``test_golden_run.py`` reruns the same runs and
compares every metrics row (without its wall-clock ``seconds``) and the summary's numbers exactly.
Regenerate only when a change is MEANT to change the numbers, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

GOLDEN_PATH = Path(__file__).parent / "data" / "micro_runs_golden.json"

# server defense -> its defense.params: a plain mean, a row-selecting rule and a seeded clustering
# rule
DEFENSES: dict[str, dict[str, Any]] = {"fedavg": {}, "krum": {}, "flame": {}}
TAUS = [0.0, 0.3, 0.5]
SUMMARY_KEYS = ("rounds", "final", "max_asr", "attack", "defense", "attacker_ids")


def run_micro(defense: str, params: dict[str, Any], folder: Path) -> dict[str, Any]:
    """One micro run (``engine_fixtures.micro_config``, continuous attack) under ``defense`` in
    ``folder / defense`` (pre-training cache ``folder / "cache"``, shared by the runs): its metrics
    rows without ``seconds`` and the summary's entries that hold no timing or digest."""
    from engine_fixtures import comparable, micro_config, single_thread

    from deepfl.io import read_jsonl
    from deepfl.runner import METRICS_NAME, Experiment

    cfg = micro_config(
        folder,
        defense={"server": defense, "params": params},
        data={"train_limit": 2000},
        benign={"epochs": 2},
        server={"clients_per_round": 5, "rule": "sample-weighted"},
        attack={"scale": 3.0},
        run={"taus": TAUS, "rounds": 4, "pretrain_rounds": 2},
    )
    with single_thread():
        summary = Experiment(cfg, folder / defense).run()
    assert summary is not None
    rows = comparable(read_jsonl(folder / defense / METRICS_NAME))
    return {"rows": rows, "summary": {key: summary[key] for key in SUMMARY_KEYS}}


def golden_outputs(folder: Path) -> dict[str, Any]:
    """``{defense: run_micro(defense, ...)}`` for every defense of :data:`DEFENSES`, in ``folder``
    (the first run pre-trains, the others start from its cached pre-training)."""
    outputs = {defense: run_micro(defense, params, folder) for defense, params in DEFENSES.items()}
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
    print(f"wrote {GOLDEN_PATH}")


if __name__ == "__main__":
    sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[2])]
    main()
