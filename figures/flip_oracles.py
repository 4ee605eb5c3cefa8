"""The README's "flip-oracles" section: the `paper` mode's continuous gap, taken apart with ground
truth.

FLIP's `paper` mode slows the continuous backdoor but does not stop it (Reproduction status,
Table 2). Two runs on the same seed replace one step of it with ground truth each:

* ``oracle_pair_target``: the benign clients harden only the backdoor pairs ``s -> target``,
  ranked by their own distance, with triggers they still invert themselves (pair selection
  given);
* ``inverter="oracle-ground-truth"``: they stamp the attack's true trigger instead of inverting
  (pair selection AND inversion given; the hardening is the `paper` mode's, unchanged).

The section shows their per-round ASR at tau 0 (App. A.6's convention) beside the committed cells
of FedAvg, the `paper` mode and `fliplab` on the same seed, and the final clean ACC, overall and on
the attack's target class (hardening pairs into the target can cost that class its accuracy). The
ablation records are compact cell records (:func:`deepfl.reproduce.compact.compact_run`) under
``results/flip/oracle/``; a test checks the README against them (:mod:`figures.readme`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepfl.reproduce.compact import read_cell

__all__ = ["ORACLE_DIR", "flip_oracles_section", "oracle_label"]

ORACLE_DIR = Path("flip") / "oracle"
BASELINE_CELLS: tuple[tuple[str, str], ...] = (
    ("fedavg", "FedAvg"),
    ("flip+paper", "FLIP `paper`"),
)
LAST_CELLS: tuple[tuple[str, str], ...] = (("flip+fliplab", "FLIP `fliplab`"),)
ROUND_STEP = 10


def oracle_label(record: dict[str, Any]) -> str:
    """What an ablation record replaced with ground truth, from its run's client params."""
    params = record["config"]["defense"]["client_params"]
    mode = params.get("mode", "fliplab")
    given = []
    if params.get("oracle_pair_target") is not None:
        given.append(f"backdoor pairs (-> {params['oracle_pair_target']}) given")
    if str(params.get("inverter", "")).startswith("oracle-"):
        given.append(f"{params['inverter']} triggers")
    return f"`{mode}`, " + " + ".join(given or ["no oracle"])


def _oracle_triggers(record: dict[str, Any]) -> bool:
    """Sort key: ablations that keep the clients' own triggers first."""
    inverter = record["config"]["defense"]["client_params"].get("inverter", "")
    return str(inverter).startswith("oracle-")


def _asr_at_tau0(record: dict[str, Any]) -> dict[int, float]:
    column = record["taus"].index(0.0)
    return dict(zip(record["rounds"], record["asr"][column], strict=True))


def _column_records(
    results_root: Path, seed: int, oracles: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """``(label, record)`` per column: the baseline cells, the ablations, then ``fliplab``."""
    anchor = oracles[0]["cell"]
    scale, dataset, attack = anchor["scale"], anchor["dataset"], anchor["attack"]
    cells = results_root / scale / "cells" / dataset / attack

    def cell(folder: str) -> dict[str, Any] | None:
        path = cells / folder / f"s{seed}.json"
        return read_cell(path) if path.exists() else None

    columns = [(label, cell(folder)) for folder, label in BASELINE_CELLS]
    columns += [(oracle_label(record), record) for record in oracles]
    columns += [(label, cell(folder)) for folder, label in LAST_CELLS]
    return [(label, record) for label, record in columns if record is not None]


def flip_oracles_section(results_root: Path) -> str:
    """Markdown: per-round ASR (%) at tau 0 every ``ROUND_STEP`` rounds from the first attack
    round's decade, the final ACC and the final ACC on the target class, one column per run
    (module docstring)."""
    paths = sorted((results_root / ORACLE_DIR).glob("*.json"))
    oracles = sorted((read_cell(path) for path in paths), key=_oracle_triggers)
    if not oracles:
        return "No oracle ablations are committed yet.\n"
    seed = int(oracles[0]["cell"]["seed"])
    columns = _column_records(results_root, seed, oracles)
    series = [_asr_at_tau0(record) for _, record in columns]
    phases = zip(oracles[0]["rounds"], oracles[0]["phase"], strict=True)
    first_attack = min(r for r, phase in phases if phase != "pretrain")
    last = max(oracles[0]["rounds"])
    shown = [r for r in range(ROUND_STEP, last + 1, ROUND_STEP) if r >= first_attack] or [last]
    if shown[-1] != last:
        shown.append(last)
    anchor = oracles[0]["cell"]
    lines = [
        f"ASR (%) at tau 0, `{anchor['scale']}` {anchor['dataset']} {anchor['attack']}, seed "
        f"{seed} (one seed; records: `results/{ORACLE_DIR.as_posix()}/`, cells: "
        f"`results/{anchor['scale']}/cells/`):",
        "",
        "| round | " + " | ".join(label for label, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for round_index in shown:
        values = [_percent(points.get(round_index)) for points in series]
        lines.append(f"| {round_index} | " + " | ".join(values) + " |")
    finals = [_percent(record["final"]["acc"][record["taus"].index(0.0)]) for _, record in columns]
    lines.append("| final ACC | " + " | ".join(finals) + " |")
    target = int(oracles[0]["config"]["attack"]["target"])
    on_target = [_percent(_class_acc(record, target)) for _, record in columns]
    lines.append(f"| final ACC on class {target} (the target) | " + " | ".join(on_target) + " |")
    return "\n".join(lines) + "\n"


def _class_acc(record: dict[str, Any], label: int) -> float | None:
    """The final clean accuracy on one class (None where the record has no per-class ACC)."""
    per_class = record["final"].get("per_class_acc")
    return None if not per_class else float(per_class[label])


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"
