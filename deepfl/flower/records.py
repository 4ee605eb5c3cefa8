"""What travels in Flower records: the model state vector and a client's persistent state.

- The global model (server -> client) and a client's update Delta_i (client -> server) travel as an
  ``ArrayRecord`` with one float32 array per floating ``state_dict`` entry, named as in the model
  (deepfl.flat's layout; BatchNorm running statistics included). ``vector_to_arrays`` /
  ``arrays_to_vector`` convert exactly (no arithmetic, the same bytes).
- A client's persistent state (FLIP's cache, the adaptive attacker's cache: a flat dict of numpy
  arrays, torch tensors and plain python values, deepfl/CONTRACT.md) lives in Flower's per-node
  ``context.state`` (a RecordDict) under ``<name>.arrays`` (ArrayRecord: arrays, tensors and numpy
  scalars, dtype kept), ``<name>.values`` (ConfigRecord: JSON text of plain values) and
  ``<name>.kinds`` (ConfigRecord: how to rebuild each key). Nothing is pickled: arrays go through
  ``np.save(allow_pickle=False)`` inside Flower, plain values through JSON.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from deepfl.flat import StateLayout

ARRAY, TENSOR, NUMPY_SCALAR, PLAIN = "numpy", "torch", "numpy-scalar", "json"


def vector_to_arrays(vector: torch.Tensor, layout: StateLayout) -> ArrayRecord:
    """Split a state vector (d,) into one named array per floating state entry."""
    if vector.shape != (layout.size,):
        raise ValueError(
            f"state vector must have shape ({layout.size},), got {tuple(vector.shape)}"
        )
    flat = vector.detach().cpu().numpy()
    record = ArrayRecord()
    for name, shape, offset in zip(layout.names, layout.shapes, layout.offsets, strict=True):
        record[name] = Array(
            np.ascontiguousarray(flat[offset : offset + shape.numel()].reshape(tuple(shape)))
        )
    return record


def arrays_to_vector(
    record: ArrayRecord, layout: StateLayout, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The state vector (d,) float32 from a record written by :func:`vector_to_arrays`.

    Raises ValueError naming the first missing, unexpected or mis-shaped entry.
    """
    missing = [name for name in layout.names if name not in record]
    extra = sorted(set(record) - set(layout.names))
    if missing or extra:
        raise ValueError(
            f"model arrays do not match the model: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    parts = []
    for name, shape in zip(layout.names, layout.shapes, strict=True):
        array = record[name].numpy()
        if tuple(array.shape) != tuple(shape):
            raise ValueError(
                f"model array {name!r} has shape {tuple(array.shape)}, expected {tuple(shape)}"
            )
        parts.append(torch.from_numpy(np.asarray(array, dtype=np.float32)).reshape(-1))
    vector = torch.cat(parts).to(device)
    if not torch.isfinite(vector).all():
        raise ValueError("model arrays contain NaN or inf")
    return vector


def _check_plain(value: Any, where: str) -> None:
    """Accept only values that JSON gives back unchanged (dict keys str, no tuples/sets/objects)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"client state {where} has a non-string "
                    f"key {key!r}; it cannot travel in a record"
                )
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"client state {where} is a {type(value).__name__}; allowed: numpy arrays/scalars, torch "
        "tensors, and JSON-plain values (None, bool, int, float, str, list, dict with str keys)"
    )


def _encode_value(key: str, value: Any, arrays: ArrayRecord, values: ConfigRecord) -> str:
    """Store one state entry in ``arrays`` or ``values``; return its kind."""
    if isinstance(value, torch.Tensor):
        arrays[key] = Array(value.detach().cpu().numpy())
        return TENSOR
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError(
                f"client state {key!r} is an object array; it cannot travel in a record"
            )
        arrays[key] = Array(np.ascontiguousarray(value))
        return ARRAY
    if isinstance(value, np.generic):
        arrays[key] = Array(np.asarray(value))
        return NUMPY_SCALAR
    _check_plain(value, repr(key))
    values[key] = json.dumps(value)
    return PLAIN


def save_state(state_records: RecordDict, name: str, state: dict[str, Any]) -> None:
    """Write the client state dict ``state`` into ``state_records`` (a node's ``context.state``) as
    ``name``.
    """
    arrays, values, kinds = ArrayRecord(), ConfigRecord(), ConfigRecord()
    for key, value in state.items():
        if not isinstance(key, str):
            raise TypeError(f"client state keys must be strings, got {key!r}")
        kinds[key] = _encode_value(key, value, arrays, values)
    state_records[f"{name}.arrays"] = arrays
    state_records[f"{name}.values"] = values
    state_records[f"{name}.kinds"] = kinds


def load_state(
    state_records: RecordDict, name: str, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """The client state dict saved by :func:`save_state` as ``name`` ({} the first time)."""
    if f"{name}.kinds" not in state_records:
        return {}
    kinds = state_records.config_records[f"{name}.kinds"]
    arrays = state_records.array_records[f"{name}.arrays"]
    values = state_records.config_records[f"{name}.values"]
    state: dict[str, Any] = {}
    for key, kind in kinds.items():
        if kind == PLAIN:
            state[key] = json.loads(str(values[key]))
        elif kind == ARRAY:
            state[key] = arrays[key].numpy()
        elif kind == NUMPY_SCALAR:
            state[key] = arrays[key].numpy()[()]
        elif kind == TENSOR:
            state[key] = torch.from_numpy(arrays[key].numpy()).to(device)
        else:
            raise ValueError(f"client state {name}: unknown kind {kind!r} for key {key!r}")
    return state
