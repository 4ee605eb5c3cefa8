"""Fixed-seed micro deep runs whose metrics must not change under refactoring.

``python tests/deepfl/golden_run.py`` (from the repository root) writes this machine's stored
outputs, ``tests/deepfl/data/micro_runs_golden/<vendor>-<capability>[-<n>].json``: the metrics rows
(without their wall-clock ``seconds``) and the summaries' numbers of every run of :data:`DEFENSES`,
with the :func:`deepfl.machine.cpu_fingerprint` they were made on. ``test_golden_run.py`` reruns
the runs and compares them bitwise with the outputs made on a machine of the same fingerprint, and
within the measured cross-machine drift with the outputs of every machine.
Write a new machine's outputs only from a commit whose numbers pass that drift check; regenerate
the stored ones only when a change is MEANT to change the numbers, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).parent / "data" / "micro_runs_golden"
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


def stored_goldens() -> dict[str, dict[str, Any]]:
    """Every stored output file, ``{file stem: {"machine": fingerprint, "outputs": ...}}``."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(GOLDEN_DIR.glob("*.json"))}


def stem_made_on(machine: dict[str, Any], goldens: dict[str, dict[str, Any]]) -> str | None:
    """The stem of the stored file made on a machine with exactly this fingerprint, or None."""
    return next((stem for stem, gold in goldens.items() if gold["machine"] == machine), None)


def golden_made_on(machine: dict[str, Any]) -> dict[str, Any] | None:
    """The stored outputs made on a machine with exactly this fingerprint, or None."""
    goldens = stored_goldens()
    stem = stem_made_on(machine, goldens)
    return None if stem is None else goldens[stem]["outputs"]


def _new_stem(machine: dict[str, Any], taken: set[str]) -> str:
    """``<vendor>-<capability>``, or with the first free ``-<n>`` where that is taken."""
    stem = f"{machine['cpu_vendor']}-{machine['torch_cpu_capability']}".lower()
    candidates = [stem] + [f"{stem}-{n}" for n in range(2, 100)]
    return next(name for name in candidates if name not in taken)


def main() -> None:
    """Write this machine's outputs from the current code (a new file, or the file already made on
    a machine of this fingerprint)."""
    import deepfl
    from deepfl.machine import cpu_fingerprint

    print(f"deepfl from {deepfl.__file__}")
    machine = cpu_fingerprint()
    goldens = stored_goldens()
    stem = stem_made_on(machine, goldens) or _new_stem(machine, set(goldens))
    with tempfile.TemporaryDirectory() as folder:
        outputs = golden_outputs(Path(folder))
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    path = GOLDEN_DIR / f"{stem}.json"
    path.write_text(
        json.dumps({"machine": machine, "outputs": outputs}, indent=1, sort_keys=True) + "\n"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[2])]
    main()
