"""A finished run directory -> one compact, committed result file (a few KB), torch-free.

Run directories (checkpoints, confidences) stay out of git; what is committed under
``results/<scale>/cells/<dataset>/<attack>/<row>/s<seed>.json`` is enough to rebuild every table and
figure on a machine that never ran the cell: the resolved config and its digest, per-round ACC and
ASR at every evaluated tau (lists aligned with ``taus``), which attackers the server kept, the final
evaluation, a 101-point ROC curve of confidence rejection and its AUC (App. A.4), and where and when
the run was made.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from figures.io import DeepRun, ResultFileError, load_deep_run
from fldata.atomic import write_text_atomic
from fldata.evaluation import EvaluationResult
from fldata.metrics import auc, roc_curve

CELL_SCHEMA = "fliplab.reproduce.cell/1"
ROC_POINTS = 101


def _rate(value: Any) -> float | None:
    return None if value is None else round(float(value), 6)


def _per_tau(run: DeepRun, metric: str, taus: list[float]) -> list[list[float | None]]:
    """``[tau][round]`` of ``metric`` ("acc" or "asr"; None where a round was not evaluated)."""
    path = Path(run.path) / "metrics.jsonl"
    results = [
        None
        if record.get(metric) is None
        else _evaluation(record, path, f"round {record['round']}")
        for record in run.records
    ]
    return [
        [None if result is None else _rate(_at(result, metric, tau)) for result in results]
        for tau in taus
    ]


def _evaluation(raw: dict[str, Any], source: Path, where: str) -> EvaluationResult:
    """The evaluation in a metrics row or ``summary["final"]``; ResultFileError if malformed."""
    try:
        return EvaluationResult.from_dict(raw)
    except ValueError as error:
        raise ResultFileError(source, f"{where}: {error}") from None


def _at(result: EvaluationResult, metric: str, tau: float) -> float:
    """ACC or ASR of ``result`` at exactly ``tau`` (TauNotEvaluatedError, a KeyError, if absent)."""
    return result.acc_at(tau) if metric == "acc" else result.asr_at(tau)


def roc_points(conf_clean: np.ndarray, conf_backdoor: np.ndarray) -> dict[str, list[float]]:
    """The ROC of confidence rejection (fldata.metrics.roc_curve) at ``ROC_POINTS`` evenly spaced
    FPRs.
    """
    fpr, tpr, _ = roc_curve(conf_clean, conf_backdoor)
    grid = np.linspace(0.0, 1.0, ROC_POINTS)
    # tpr is a step function of fpr: take the best tpr reachable at each false-positive budget.
    index = np.searchsorted(fpr, grid, side="right") - 1
    return {
        "fpr": [round(float(v), 4) for v in grid],
        "tpr": [round(float(v), 6) for v in tpr[index]],
    }


def _provenance(run_dir: Path) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "git_commit": commit,
        "host": platform.node(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def compact_run(run_dir: str | os.PathLike[str], cell: dict[str, Any]) -> dict[str, Any]:
    """The compact record of the finished run in ``run_dir`` for the grid cell ``cell`` (its
    identity).
    """
    run = load_deep_run(run_dir)
    taus = [float(t) for t in run.config["run"]["taus"]]
    rounds = [int(record["round"]) for record in run.records]
    expected = list(range(1, int(run.config["run"]["rounds"]) + 1))
    if rounds != expected:
        raise ResultFileError(
            Path(run_dir) / "metrics.jsonl", f"rounds {rounds[:3]}... are not 1..{expected[-1]}"
        )
    attackers = [set(record.get("attackers") or []) for record in run.records]
    accepted = [record.get("accepted") for record in run.records]
    record: dict[str, Any] = {
        "schema": CELL_SCHEMA,
        "cell": cell,
        "config_digest": run.summary.get("config_digest"),
        "config": run.config,
        "taus": taus,
        "rounds": rounds,
        "phase": [r.get("phase") for r in run.records],
        "acc": _per_tau(run, "acc", taus),
        "asr": _per_tau(run, "asr", taus),
        "attackers_kept": [
            None if kept is None else len(att & set(kept))
            for att, kept in zip(attackers, accepted, strict=True)
        ],
        "attackers_present": [len(att) for att in attackers],
        "refused": [bool(r.get("refused")) for r in run.records],
        "final": _final(run, taus),
        "attacker_ids": run.summary.get("attacker_ids"),
        "seconds": {
            k: round(float(v), 3) for k, v in (run.summary.get("seconds_total") or {}).items()
        },
        "device": run.summary.get("device"),
        "device_name": run.summary.get("device_name"),
        "cpu": run.summary.get("cpu"),
        **_provenance(Path(run_dir)),
    }
    if run.conf_clean is not None and run.conf_backdoor is not None:
        record["roc"] = roc_points(run.conf_clean, run.conf_backdoor)
        record["auc"] = round(auc(run.conf_clean, run.conf_backdoor), 6)
    return record


def _final(run: DeepRun, taus: list[float]) -> dict[str, Any]:
    """The final evaluation of ``run`` as lists aligned with ``taus``."""
    final = _evaluation(run.summary["final"], Path(run.path) / "summary.json", "final")
    return {
        "acc": [_rate(final.acc_at(t)) for t in taus],
        "asr": [_rate(final.asr_at(t)) for t in taus],
        "per_class_acc": run.summary["final"].get("per_class_acc"),
    }


def write_cell(path: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Write a compact record atomically (sorted keys, one line per top-level key for readable
    diffs).
    """
    lines = [
        f"  {json.dumps(key)}: {json.dumps(record[key], sort_keys=True)}" for key in sorted(record)
    ]
    return write_text_atomic(path, "{\n" + ",\n".join(lines) + "\n}\n")


TRIGGERS_SUFFIX = ".triggers.npz"


def triggers_path(cell_path: str | os.PathLike[str]) -> Path:
    """Where a cell's inverted triggers are committed: ``s<seed>.triggers.npz`` beside
    ``s<seed>.json``.
    """
    path = Path(cell_path)
    return path.with_name(path.stem + TRIGGERS_SUFFIX)


def copy_run_triggers(
    run_dir: str | os.PathLike[str], cell_path: str | os.PathLike[str]
) -> Path | None:
    """Copy a FLIP run's ``flip_triggers.npz`` (a few inverted triggers, float16; Figure 2c) next to
    the cell's compact record, after checking it loads without pickles; None when the run has
    none."""
    source = Path(run_dir) / "flip_triggers.npz"
    if not source.exists():
        return None
    with np.load(source, allow_pickle=False) as arrays:
        content = {name: arrays[name] for name in arrays.files}
    if "masks" not in content or "target" not in content:
        raise ValueError(f"{source}: not a flip_triggers.npz (needs 'masks' and 'target')")
    target = triggers_path(cell_path)
    temporary = target.with_name(f".{target.name}.tmp")
    with open(temporary, "wb") as handle:
        np.savez_compressed(handle, **content)
    os.replace(temporary, target)
    return target


def read_cell(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A compact record; ResultFileError if it is unreadable or not of this schema."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ResultFileError(path, f"cannot read cell result ({error})") from None
    if not isinstance(record, dict) or record.get("schema") != CELL_SCHEMA:
        raise ResultFileError(path, f"not a {CELL_SCHEMA} record")
    return record
