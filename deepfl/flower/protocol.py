"""The messages between deepfl's ServerApp and ClientApp (keys of the records in a Message).

- QUERY (server -> every node, once per run): empty ``config``; the reply's ConfigRecord
  ``partition`` holds ``partition-id`` (the client id this node is).
- TRAIN (server -> each participant of a round): ArrayRecord ``arrays`` (global model, one float32
  array per floating state entry) and ConfigRecord ``config``: ``server-round``, ``client-id``,
  ``phase`` ("pretrain" | "attack"), ``attacker-index`` (k >= 0 attacker with trigger piece k,
  -1 benign) and ``experiment`` (the resolved config, JSON). The reply holds ArrayRecord ``update``
  (Delta_i, same layout) and MetricRecord ``metrics`` with ``num-examples`` (local sample count).
"""

from __future__ import annotations

from collections.abc import Mapping

ARRAYS_KEY, CONFIG_KEY, UPDATE_KEY, METRICS_KEY, PARTITION_KEY = (
    "arrays",
    "config",
    "update",
    "metrics",
    "partition",
)
PARTITION_ID = "partition-id"


def config_int(record: Mapping[str, object], key: str) -> int:
    """``record[key]`` as an int; TypeError naming the key if it is missing or not an int."""
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"message field {key!r} must be an int, got {value!r}")
    return value


def config_str(record: Mapping[str, object], key: str) -> str:
    """``record[key]`` as a str; TypeError naming the key if it is missing or not a str."""
    value = record.get(key)
    if not isinstance(value, str):
        raise TypeError(f"message field {key!r} must be a string, got {value!r}")
    return value
