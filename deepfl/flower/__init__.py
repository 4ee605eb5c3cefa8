"""fliplab on Flower (flwr 1.42): the deepfl experiments on a real federated-learning engine.

- :mod:`.strategy`: ``DefenseStrategy``, a Flower Strategy whose aggregation is any
  ``deepfl.defenses.REGISTRY`` aggregator under the engine's global update rule, with the native
  engine's client sampling;
- :mod:`.client_app`: the ClientApp whose ``train`` is deepfl's local training (attackers, FLIP),
  client state kept in Flower's per-node ``context.state``;
- :mod:`.server_app`: the ServerApp, server-side ACC/ASR evaluation and the native run directory;
- :mod:`.simulation`: ``python -m deepfl.flower`` on Flower's Ray simulation engine;
- :mod:`.records`: model vectors and client states as Flower records (no pickle).

Install with ``pip install -e ".[flower]"``. Flower's usage telemetry and update check are
switched off here unless the environment already sets them (fliplab never needs the network).
"""

from __future__ import annotations

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
