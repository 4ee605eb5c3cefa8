"""Load and validate saved result files; write outputs atomically.

Figures are rebuilt from results on disk only (STYLE.md, "Our own habits"). Two kinds of input:

* the JSON written by ``python -m theory.verify --json`` (schema ``fliplab.theory.verify/1``);
* a deepfl run directory (deepfl/runner.py) holding ``config.json``, ``metrics.jsonl``,
  ``summary.json`` and, optionally, ``confidences.npz`` (arrays ``clean_confidence`` and
  ``backdoor_confidence``; the names ``conf_clean`` / ``conf_backdoor`` are accepted too).

Every problem with an input raises :class:`ResultFileError`, whose message names the file and the
key; a request the inputs cannot answer (a ``--tau`` they did not record) raises
:class:`ResultRequestError`. A deepfl run whose ``metrics.jsonl`` misses rounds (or repeats them) is
refused unless ``allow_gaps=True``: a curve drawn over a gap looks like a complete run.
"""

from __future__ import annotations

import json
import math
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from fldata.atomic import atomic_write, write_text_atomic

THEORY_SCHEMA = "fliplab.theory.verify/1"

_T1_KEYS = ("lb", "lb_jensen", "actual", "ub", "ub_r2")
_COUNT_KEYS = ("n_acc", "n_asr", "rejected_clean", "rejected_backdoor")
# Dotted key paths every theory.verify result must have (lists are checked element by element
# below).
_THEORY_REQUIRED: tuple[str, ...] = (
    "attack",
    "round",
    "taus",
    *(f"theorem1.{part}.{key}" for part in ("clean", "backdoor") for key in _T1_KEYS),
    *(
        f"theorem2.{key}"
        for key in ("eps_paper", "eps_paper_status", "eps_A", "eps_B", "delta_inf")
    ),
    "corollary1",
    *(f"metrics.{side}.{key}" for side in ("no_defense", "defense") for key in ("acc", "asr")),
    "metrics.tau",
    "metrics.clean_total",
    "metrics.backdoor_total",
)
_COROLLARY_REQUIRED: tuple[str, ...] = (
    "tau",
    *(f"{side}.{key}" for side in ("no_defense", "defense") for key in _COUNT_KEYS),
    "neutralised_actual",
    "certified_t1.neutralised",
    "certified_jensen.neutralised",
)
_SERIES_REQUIRED: tuple[str, ...] = (
    "round",
    *(f"theorem1.{part}.{key}" for part in ("clean", "backdoor") for key in _T1_KEYS),
    *(f"theorem2.{key}" for key in ("eps_A", "eps_B", "delta_inf", "eps_paper")),
)


class ResultFileError(ValueError):
    """A result file is missing, unreadable, or does not follow its schema."""

    def __init__(self, source: str | os.PathLike[str], problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class ResultRequestError(ResultFileError):
    """The result files are readable but do not hold what was asked for (e.g. a --tau they did not
    record).
    """


def require(mapping: Any, dotted_key: str, source: str | os.PathLike[str], prefix: str = "") -> Any:
    """Return ``mapping[k1][k2]...`` for ``dotted_key = "k1.k2..."``; raise ResultFileError naming
    the key.
    """
    value = mapping
    walked = prefix
    for part in dotted_key.split("."):
        walked = f"{walked}.{part}" if walked else part
        if not isinstance(value, dict) or part not in value:
            raise ResultFileError(source, f"missing key '{walked}'")
        value = value[part]
    return value


def load_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a missing file or invalid JSON raises ResultFileError."""
    path = Path(path)
    if not path.is_file():
        raise ResultFileError(path, "file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ResultFileError(path, f"not valid JSON ({error})") from None


def validate_theory_result(
    data: Any, source: str | os.PathLike[str] = "<theory result>"
) -> dict[str, Any]:
    """Check that ``data`` follows schema ``fliplab.theory.verify/1`` (only the keys the figures
    read).

    ``series`` is optional (written by ``--all-rounds``); when present each entry is checked too.
    """
    if not isinstance(data, dict):
        raise ResultFileError(source, "top level must be a JSON object")
    schema = data.get("schema")
    if schema != THEORY_SCHEMA:
        raise ResultFileError(source, f"key 'schema' is {schema!r}; expected {THEORY_SCHEMA!r}")
    for key in _THEORY_REQUIRED:
        require(data, key, source)
    entries = {"corollary1": _COROLLARY_REQUIRED, "series": _SERIES_REQUIRED}
    for list_key, required in entries.items():
        items = data.get(list_key, [])
        if not isinstance(items, list):
            raise ResultFileError(source, f"key '{list_key}' must be a list")
        for index, item in enumerate(items):
            for key in required:
                require(item, key, source, prefix=f"{list_key}[{index}]")
    return data


def load_theory_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate one ``theory.verify --json`` file."""
    return validate_theory_result(load_json(path), path)


@dataclass(frozen=True)
class DeepRun:
    """One deepfl run directory, read from disk.

    ``records`` are the lines of ``metrics.jsonl`` in file order (``acc``/``asr`` are ``None`` on
    rounds that were not evaluated); ``conf_clean``/``conf_backdoor`` are the max-softmax
    confidences from ``confidences.npz`` when the run saved them, else ``None``.
    """

    path: Path
    config: dict[str, Any]
    records: list[dict[str, Any]]
    summary: dict[str, Any]
    conf_clean: np.ndarray | None = None
    conf_backdoor: np.ndarray | None = None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of ``metrics.jsonl``; a torn (unparsable) LAST line is dropped, as deepfl.io.read_jsonl
    does.
    """
    if not path.is_file():
        raise ResultFileError(path, "file not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            if line_number == len(lines):
                break  # a run still writing (or killed mid-write) leaves a torn last line
            raise ResultFileError(path, f"line {line_number} is not valid JSON ({error})") from None
        if not isinstance(record, dict):
            raise ResultFileError(path, f"line {line_number} must be a JSON object")
        for key in ("round", "acc", "asr"):
            require(record, key, path, prefix=f"line {line_number}:")
        records.append(record)
    return records


# Accepted array names in confidences.npz: the engine's, then the short ones.
_CONFIDENCE_NAMES: tuple[tuple[str, str], ...] = (
    ("clean_confidence", "backdoor_confidence"),
    ("conf_clean", "conf_backdoor"),
)


def round_problem(records: list[dict[str, Any]]) -> str | None:
    """What is wrong with the rounds of ``records`` (they must be 1, 2, ..., N in order), or
    ``None``.
    """
    rounds = [record["round"] for record in records]
    if rounds == list(range(1, len(rounds) + 1)):
        return None
    seen = {r for r in rounds if isinstance(r, int)}
    top = max(seen, default=0)
    missing = [r for r in range(1, top + 1) if r not in seen]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        return f"rounds {shown} are missing"
    shown = ", ".join(map(str, rounds[:12])) + (" ..." if len(rounds) > 12 else "")
    return f"rounds are repeated or out of order ({shown})"


def _load_confidences(conf_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The clean and backdoor confidence arrays of ``confidences.npz``; ResultFileError if
    unreadable.
    """
    try:
        with np.load(conf_path, allow_pickle=False) as arrays:
            names = next(
                (pair for pair in _CONFIDENCE_NAMES if all(name in arrays for name in pair)), None
            )
            if names is None:
                expected = " or ".join(
                    f"'{clean}' and '{backdoor}'" for clean, backdoor in _CONFIDENCE_NAMES
                )
                raise ResultFileError(
                    conf_path, f"missing arrays: need {expected}; found {sorted(arrays.files)}"
                )
            return (
                np.asarray(arrays[names[0]], dtype=np.float64),
                np.asarray(arrays[names[1]], dtype=np.float64),
            )
    except ResultFileError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise ResultFileError(
            conf_path, f"not a readable .npz file ({type(error).__name__}: {error})"
        ) from None


def load_deep_run(run_dir: str | os.PathLike[str], allow_gaps: bool = False) -> DeepRun:
    """Load a deepfl run directory (``config.json``, ``metrics.jsonl``, ``summary.json``[,
    ``confidences.npz``]).

    Rows of ``metrics.jsonl`` must be rounds 1..N in order; otherwise ResultFileError, or with
    ``allow_gaps=True`` a warning.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResultFileError(run_dir, "run directory not found")
    config = load_json(run_dir / "config.json")
    summary = load_json(run_dir / "summary.json")
    for name, content in (("config.json", config), ("summary.json", summary)):
        if not isinstance(content, dict):
            raise ResultFileError(run_dir / name, "top level must be a JSON object")
    for key in ("final.acc", "final.asr"):
        require(summary, key, run_dir / "summary.json")
    records = _read_jsonl(run_dir / "metrics.jsonl")
    problem = round_problem(records)
    if problem and not allow_gaps:
        raise ResultFileError(
            run_dir / "metrics.jsonl",
            f"{problem}; refusing to plot a run with gaps (pass --allow-gaps to plot it anyway)",
        )
    if problem:
        warnings.warn(
            f"{run_dir / 'metrics.jsonl'}: {problem}; plotted anyway (--allow-gaps)", stacklevel=2
        )
    conf_clean = conf_backdoor = None
    conf_path = run_dir / "confidences.npz"
    if conf_path.is_file():
        conf_clean, conf_backdoor = _load_confidences(conf_path)
    return DeepRun(run_dir, config, records, summary, conf_clean, conf_backdoor)


def as_float(value: Any) -> float:
    """JSON number -> float; ``None`` (undefined) -> NaN."""
    return math.nan if value is None else float(value)


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Write ``figure`` as a PNG at ``path`` atomically (temp file in the same folder +
    ``os.replace``).
    """
    return atomic_write(path, lambda stream: figure.savefig(stream, format="png", dpi=dpi))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) at ``path`` atomically."""
    return write_text_atomic(path, text)
