"""What a resumed run checks before it continues: the same config, and every metrics row kept.

A checkpoint stores, besides the model and states (deepfl.checkpoint), the resolved config (JSON),
its digest and the seed, and its own copy of the metrics rows of rounds 1..R, all behind the
file's SHA-256 header. On resume:

* the config in ``config.json`` must be the checkpoint's: a changed seed or setting would give a
  run that is half one experiment and half another (:func:`check_same_config`);
* ``metrics.jsonl`` must hold exactly rounds 1..R (rows past R, written after the last checkpoint,
  are dropped and recomputed). A file cut mid-row, with rows lost or edited, is restored from the
  checkpoint's copy with a warning (:func:`reconcile_metrics`). A checkpoint of an older version
  has no copy: then a file with missing rounds is refused, never silently resumed over a gap.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from fldata.cli import InputOutputError, UsageError

LOGGER = logging.getLogger("deepfl")
Row = dict[str, Any]


class ResumeError(InputOutputError):
    """The run folder cannot be resumed without losing or inventing metrics rows."""


class ConfigMismatchError(UsageError):
    """``config.json`` is not the config the run was started (and checkpointed) with."""


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_differences(
    stored: dict[str, Any],
    current: dict[str, Any],
    labels: tuple[str, str] = ("checkpoint", "config.json"),
    ignore: frozenset[str] = frozenset(),
) -> list[str]:
    """``key (checkpoint X, config.json Y)`` for every dotted key whose value differs (the two
    names from ``labels``), except the dotted keys in ``ignore``."""
    old, new = _flatten(stored), _flatten(current)
    return [
        f"{key} ({labels[0]} {old.get(key)!r}, {labels[1]} {new.get(key)!r})"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key) and key not in ignore
    ]


def check_same_config(
    state: dict[str, Any],
    config: dict[str, Any],
    digest: str,
    run_dir: str,
    upgrade: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> None:
    """Refuse to resume when the checkpoint's config digest or seed differs from the current config.

    A checkpoint of an older version without a stored config is accepted with a warning. So is one
    whose stored config, read by the current version (``upgrade``: renamed keys mapped, fields
    added since at their defaults; ``None`` if it cannot be read), equals ``config``.
    """
    if "config_digest" not in state:
        LOGGER.warning(
            "%s: the checkpoint stores no config digest (older version); cannot check config.json",
            run_dir,
        )
        return
    if state["config_digest"] == digest and state.get("seed") == config.get("seed"):
        return
    stored = json.loads(state.get("config_json", "{}"))
    if stored and upgrade is not None and state.get("seed") == config.get("seed"):
        if upgrade(stored) == config:
            LOGGER.warning(
                "%s: the checkpoint's config was written by an older fliplab (%s); it reads as "
                "config.json today, resuming",
                run_dir,
                "; ".join(config_differences(stored, config)[:5]),
            )
            return
    changed = (
        config_differences(stored, config)
        if stored
        else [f"digest {state['config_digest']} != {digest}"]
    )
    raise ConfigMismatchError(
        f"{run_dir}/config.json differs from the config of its checkpoint: "
        f"{'; '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}; restore it, or start a new "
        "run with another --out"
    )


def rounds_of(rows: list[Row]) -> list[int]:
    """The ``round`` of each row (-1 for a row without an integer one)."""
    return [row["round"] if isinstance(row.get("round"), int) else -1 for row in rows]


def reconcile_metrics(
    file_rows: list[Row], copy_rows: list[Row] | None, done: int, source: str
) -> list[Row]:
    """The metrics rows of rounds 1..``done`` to resume with.

    Args:
        file_rows: the rows parsed from ``metrics.jsonl`` (a torn line ends them).
        copy_rows: the checkpoint's copy of rounds 1..done, or ``None`` for an older checkpoint.
        done: the checkpoint's last completed round.
        source: the file's path, for messages.
    """
    kept = [row for row in file_rows if isinstance(row.get("round"), int) and row["round"] <= done]
    complete = rounds_of(kept) == list(range(1, done + 1))
    if copy_rows is not None:
        if rounds_of(copy_rows) != list(range(1, done + 1)):
            raise ResumeError(
                f"{source}: the checkpoint's copy of the metrics does not hold rounds 1..{done}"
            )
        if encode_rows(kept) != encode_rows(copy_rows):  # text, so NaN == NaN
            present = set(rounds_of(kept))
            missing = [r for r in range(1, done + 1) if r not in present]
            LOGGER.warning(
                "%s was damaged (%s); restored rounds 1..%d from the checkpoint's checksummed copy",
                source,
                f"rounds {missing} missing" if missing else "rows differ",
                done,
            )
        return copy_rows
    if not complete:
        raise ResumeError(
            f"{source} does not hold rounds 1..{done} in order (found {rounds_of(kept)}) and the "
            "checkpoint (older version) has no copy to repair it from; resuming would lose or "
            "repeat rows"
        )
    return kept


def encode_rows(rows: list[Row]) -> str:
    """Rows as JSON lines, the form the checkpoint keeps its copy in."""
    return "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)


def decode_rows(text: str | None) -> list[Row] | None:
    """Inverse of :func:`encode_rows`; ``None`` stays ``None`` (no copy)."""
    return (
        None if text is None else [json.loads(line) for line in text.splitlines() if line.strip()]
    )
