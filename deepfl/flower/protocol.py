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

ARRAYS_KEY, CONFIG_KEY, UPDATE_KEY, METRICS_KEY, PARTITION_KEY = "arrays", "config", "update", "metrics", "partition"
PARTITION_ID = "partition-id"
