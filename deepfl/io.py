"""Atomic file output of a run directory: write to a temporary sibling, then ``os.replace``.

A reader (or a resumed run) therefore sees either the old or the new complete file, never a
partial one. ``metrics.jsonl`` is appended line by line; a torn last line is dropped on reading.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from fldata.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic  # noqa: F401 (re-exported)


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    write_text_atomic(path, text)


def append_jsonl(path: str | Path, row: dict[str, Any]) -> None:
    with open(path, "a") as stream:
        stream.write(json.dumps(row, sort_keys=True) + "\n")
        stream.flush()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a torn (unparsable) line ends the read. Missing file -> []."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def save_npz_atomic(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # stubs match **arrays to allow_pickle
    write_bytes_atomic(path, buffer.getvalue())
