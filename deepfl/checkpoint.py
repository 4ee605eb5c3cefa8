"""Checkpoints of a run (resume) and the cache of pre-trained clean models (reuse across runs).

A checkpoint holds everything a resumed run needs to continue exactly: the round index, the global
state vector, the clients' persistent states (no optimiser state: optimisers are rebuilt every
round), the server defense state, and torch's global RNG state (the engine's own streams are
derived from (seed, round, client), so they need no saving).

Nothing here ever runs code from disk. A file is one header line ``fliplab-sha256:<hex>`` (the
SHA-256 of the rest) followed by ``torch.save`` bytes, read back with ``weights_only=True``: only
tensors and plain containers (dict, list, tuple, str, int, float, bool, None) come back. Client
states may hold numpy arrays (FLIP keeps its trigger masks and distance matrix as numpy), so
:func:`to_plain` stores each array as a tensor under a ``{"__ndarray__": tensor}`` marker and
:func:`from_plain` turns it back; numpy scalars become Python numbers. A file whose hash does not
match, or that does not load under ``weights_only=True``, raises :class:`DamagedFileError`.

Checkpoints of older versions (no header, numpy arrays pickled as such) still resume: they are
read with ``weights_only=True`` plus numpy's array-rebuilding functions allow-listed
(:func:`legacy_numpy_globals`), which rebuild arrays and scalars of plain dtypes and nothing else.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfl.io import write_bytes_atomic
from fldata.cli import InputOutputError

CHECKPOINT_NAME = "checkpoint.pt"
HEADER_PREFIX = b"fliplab-sha256:"
NDARRAY_MARKER = "__ndarray__"
LOGGER = logging.getLogger("deepfl")


class DamagedFileError(InputOutputError):
    """A checkpoint or cache entry cannot be used: unreadable, hash mismatch, or unsafe/unknown
    content.
    """


def to_plain(value: Any) -> Any:
    """``value`` with every numpy array replaced by a tensor marker and numpy scalars by Python
    numbers.

    Raises ``TypeError`` naming the type for anything ``torch.load(weights_only=True)`` could not
    read back (objects, object arrays), so an unsafe state is caught when saved, not when resumed.
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise TypeError(
                f"cannot checkpoint a numpy array of dtype {value.dtype}; use a numeric array"
            )
        return {NDARRAY_MARKER: torch.from_numpy(np.array(value, order="C", copy=True))}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {to_plain(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(item) for item in value)
    if value is None or isinstance(value, (torch.Tensor, bool, int, float, str)):
        return value
    raise TypeError(
        f"cannot checkpoint a value of type {type(value).__name__}; keep states to tensors, numpy "
        "arrays, numbers, strings and dict/list/tuple of them"
    )


def from_plain(value: Any) -> Any:
    """Inverse of :func:`to_plain`: tensor markers become numpy arrays (on the CPU) again."""
    if isinstance(value, dict):
        if set(value) == {NDARRAY_MARKER} and isinstance(value[NDARRAY_MARKER], torch.Tensor):
            return value[NDARRAY_MARKER].cpu().numpy()
        return {key: from_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(from_plain(item) for item in value)
    return value


def kept_name(round_index: int) -> str:
    """File name of the checkpoint kept at ``round_index`` (``run.keep_checkpoints``)."""
    return f"checkpoint-r{round_index:04d}.pt"


def save_atomic(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (see :func:`to_plain`) to ``path`` atomically, behind its SHA-256 header
    line.
    """
    buffer = io.BytesIO()
    torch.save(to_plain(payload), buffer)
    body = buffer.getvalue()
    header = HEADER_PREFIX + hashlib.sha256(body).hexdigest().encode() + b"\n"
    write_bytes_atomic(path, header + body)


def legacy_numpy_globals() -> list[Any]:
    """What ``torch.save`` of numpy arrays and scalars references: array/scalar rebuilders and
    dtypes only.
    """
    multiarray = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    dtype_classes = (
        [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
        if hasattr(np, "dtypes")
        else []
    )
    return [
        np.ndarray,
        np.dtype,
        multiarray.multiarray._reconstruct,
        multiarray.multiarray.scalar,
        *dtype_classes,
    ]


def _verified_body(path: Path, raw: bytes, require_hash: bool) -> bytes:
    """The torch bytes of ``raw`` after its header's hash is checked; headerless (older) files if
    allowed.
    """
    if not raw.startswith(HEADER_PREFIX):
        if require_hash:
            raise DamagedFileError(
                f"{path} has no fliplab-sha256 header (not written by this version)"
            )
        LOGGER.warning(
            "%s has no content hash (written by an older fliplab); loading it with "
            "weights_only=True",
            path,
        )
        return raw
    header, _, body = raw.partition(b"\n")
    expected = header[len(HEADER_PREFIX) :].decode("ascii", errors="replace")
    if hashlib.sha256(body).hexdigest() != expected:
        raise DamagedFileError(f"{path} is damaged: its content does not match its SHA-256 header")
    return body


def load(path: str | Path, device: torch.device, require_hash: bool = True) -> dict[str, Any]:
    """Read a file written by :func:`save_atomic` (tensors mapped to ``device``); never unpickles
    code.

    ``require_hash=False`` also accepts a headerless checkpoint of an older version, still only
    under ``weights_only=True``. Any failure raises :class:`DamagedFileError` with a one-line
    message.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DamagedFileError(f"{path} cannot be read: {error.strerror or error}") from None
    body = _verified_body(path, raw, require_hash)
    legacy = not raw.startswith(HEADER_PREFIX)
    try:
        with torch.serialization.safe_globals(legacy_numpy_globals() if legacy else []):
            payload = torch.load(io.BytesIO(body), map_location=device, weights_only=True)
    except (
        Exception
    ) as error:  # any unpickling/zip failure means the same thing: do not use the file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DamagedFileError(
            f"{path} cannot be loaded safely ({type(error).__name__}: {reason[:200]})"
        ) from None
    if not isinstance(payload, dict):
        raise DamagedFileError(f"{path} does not hold a dict (found {type(payload).__name__})")
    return from_plain(payload)


def rng_state(device: torch.device) -> dict[str, Any]:
    """torch's global RNG state (and the CUDA device's), for an exact resume."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
