"""Save and load engine states: ``NAME.npz`` (arrays) + ``NAME.json`` sidecar (config, seed,
version, checks).

The sidecar stores, for every array, its shape, dtype and the sha256 of its
bytes, plus the caller's ``meta`` (config, seed, ...) and the engine version.
Writes are atomic (temporary file in the same folder + ``os.replace``), so a
crash never leaves a half-written state. :func:`load_state` refuses files whose
arrays do not match the sidecar, the expected shapes, or the version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fldata.atomic import atomic_write

from .config import ENGINE_VERSION


class StateError(ValueError):
    """A saved state is missing, corrupt, or does not match what the caller expects."""


def array_sha256(a: np.ndarray) -> str:
    """sha256 of the C-contiguous bytes of ``a`` (with its dtype and shape)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    base = p.with_suffix("") if p.suffix in (".npz", ".json") else p
    return base.with_name(base.name + ".npz"), base.with_name(base.name + ".json")


def save_state(path: str | Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Write ``arrays`` to ``path.npz`` and ``meta`` plus checks to ``path.json``; returns the .npz
    path.

    ``meta`` must be JSON-serialisable (put the config's ``to_dict()`` and the seed in it).
    """
    npz_path, json_path = _paths(path)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise ValueError(f"array {k!r} has dtype object; only numeric arrays can be saved")
    sidecar = {
        "version": ENGINE_VERSION,
        "meta": dict(meta),
        "arrays": {
            k: {"shape": list(v.shape), "dtype": v.dtype.str, "sha256": array_sha256(v)}
            for k, v in arrays.items()
        },
    }
    text = json.dumps(sidecar, indent=1, sort_keys=True)
    atomic_write(npz_path, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]  # stubs: **arrays vs allow_pickle
    atomic_write(json_path, lambda fh: fh.write(text.encode()))
    return npz_path


def load_state(
    path: str | Path,
    expected_shapes: Mapping[str, tuple[int, ...]] | None = None,
    verify_hash: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read ``(arrays, meta)`` back, validating them against the sidecar and ``expected_shapes``.

    Raises :class:`StateError` (a ``ValueError``) with the reason if a file is
    missing, the version differs, an array is missing / has another shape or
    dtype than recorded or expected, or its sha256 does not match.
    """
    npz_path, json_path = _paths(path)
    for p in (npz_path, json_path):
        if not p.exists():
            raise StateError(
                f"state file {p} does not exist (a state is a .npz plus a .json sidecar)"
            )
    try:
        sidecar = json.loads(json_path.read_text())
    except json.JSONDecodeError as exc:
        raise StateError(f"sidecar {json_path} is not valid JSON: {exc}") from exc
    if sidecar.get("version") != ENGINE_VERSION:
        raise StateError(
            f"{json_path} was written by {sidecar.get('version')!r}; this engine is "
            f"{ENGINE_VERSION!r}"
        )
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zip/format errors of a damaged file
        raise StateError(f"cannot read {npz_path}: {exc}") from exc
    recorded = sidecar.get("arrays", {})
    if set(recorded) != set(arrays):
        raise StateError(
            f"{npz_path} holds arrays {sorted(arrays)} but its sidecar lists {sorted(recorded)}"
        )
    for name, info in recorded.items():
        a = arrays[name]
        if list(a.shape) != info["shape"] or a.dtype.str != info["dtype"]:
            raise StateError(
                f"array {name!r} in {npz_path} has shape {a.shape} dtype {a.dtype.str}; sidecar "
                f"says {tuple(info['shape'])} {info['dtype']}"
            )
        if verify_hash and array_sha256(a) != info["sha256"]:
            raise StateError(
                f"array {name!r} in {npz_path} fails its sha256 check (file corrupt or edited)"
            )
    for name, shape in (expected_shapes or {}).items():
        if name not in arrays:
            raise StateError(f"{npz_path} has no array {name!r}; it holds {sorted(arrays)}")
        if tuple(arrays[name].shape) != tuple(shape):
            raise StateError(
                f"array {name!r} in {npz_path} has shape {arrays[name].shape}, expected "
                f"{tuple(shape)}"
            )
    return arrays, sidecar["meta"]
