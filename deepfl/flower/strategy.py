"""A Flower strategy that runs the server side of a deepfl experiment with any deepfl defense.

Round r (Flower's ``server_round``, 1-based, the engine's round index):

- ``configure_train``: the participants are those of ``AttackSchedule.plan(r)`` (deepfl.attacks),
  the same clients, attackers and order as the native engine; client ``i`` is the SuperNode whose
  ``node_config["partition-id"]`` is ``i`` (learned once by a QUERY message to every node). Each
  gets the global model, the round, its phase and role (attacker index or -1) and the resolved
  experiment config (JSON).
- ``aggregate_train``: the updates Delta_i = w_i - G (attackers' already scaled by the client) are
  stacked in plan order and handed to ``Experiment.aggregate_round``: the configured aggregator
  from ``deepfl.defenses.REGISTRY`` (plain fedavg in clean pre-training rounds), then
  G <- G + eta_g * agg with eta_g from ``server.rule`` (the released global-lr rule, or 1 for
  FedAvg by sample count, whose weights are the clients' sample counts). The ids of the clients
  the aggregator kept go to the metrics row (``accepted``) and to :attr:`accepted`.
- Evaluation is server-side (deepfl.flower.server_app); no client evaluation rounds.

A reply missing, failing, or reporting a sample count other than its partition's stops the run
with an error: a round of the native engine always has all its planned participants.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from deepfl.attacks import RoundPlan
from deepfl.flower.protocol import (
    ARRAYS_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    PARTITION_ID,
    PARTITION_KEY,
    UPDATE_KEY,
    config_int,
)
from deepfl.flower.records import arrays_to_vector, vector_to_arrays
from deepfl.runner import Experiment


class DefenseStrategy(Strategy):
    """Server side of one deepfl run (module docstring) on a Flower ``Grid``.

    Args:
        engine: the run's :class:`deepfl.runner.Experiment` (global state, schedule, aggregators).
        node_wait_seconds: how long to wait for ``data.num_clients`` SuperNodes to connect.
        reply_timeout: seconds to wait for the replies of one round (Flower's ``timeout``).
    """

    def __init__(
        self, engine: Experiment, node_wait_seconds: float = 120.0, reply_timeout: float = 3600.0
    ) -> None:
        self.engine = engine
        self.node_wait_seconds = node_wait_seconds
        self.reply_timeout = reply_timeout
        self.experiment_json = json.dumps(engine.cfg.to_dict(), sort_keys=True)
        self.node_of_client: dict[int, int] = {}
        self.accepted: dict[int, list[int]] = {}
        self.last_row: dict[str, Any] | None = None
        self._plan: RoundPlan | None = None
        self._train_started = 0.0

    def summary(self) -> None:
        """Nothing to log beyond the config stored in the run directory."""

    # ----------------------------------------------------------------------------- nodes
    def discover_nodes(self, grid: Grid) -> dict[int, int]:
        """Map client id -> node id by asking every node its ``partition-id`` (once per run)."""
        if self.node_of_client:
            return self.node_of_client
        num_clients = self.engine.cfg.data.num_clients
        node_ids = _wait_for_nodes(grid, num_clients, self.node_wait_seconds)
        queries = [
            Message(RecordDict({CONFIG_KEY: ConfigRecord({})}), node, MessageType.QUERY)
            for node in node_ids
        ]
        mapping: dict[int, int] = {}
        for reply in grid.send_and_receive(queries, timeout=self.reply_timeout):
            if reply.has_error():
                raise RuntimeError(
                    f"node {reply.metadata.src_node_id} failed the partition query: "
                    f"{reply.error.reason}"
                )
            client = config_int(reply.content.config_records[PARTITION_KEY], PARTITION_ID)
            if not 0 <= client < num_clients:
                raise RuntimeError(
                    f"node {reply.metadata.src_node_id} has partition-id {client}, outside [0, "
                    f"data.num_clients={num_clients})"
                )
            if client in mapping:
                raise RuntimeError(
                    f"two nodes ({mapping[client]}, {reply.metadata.src_node_id}) have "
                    f"partition-id {client}"
                )
            mapping[client] = reply.metadata.src_node_id
        missing = sorted(set(range(num_clients)) - set(mapping))
        if missing:
            raise RuntimeError(f"no node answered for partition-id(s) {missing}")
        self.node_of_client = mapping
        return mapping

    # ----------------------------------------------------------------------------- training
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """One TRAIN message per participant of ``AttackSchedule.plan(server_round)``."""
        nodes = self.discover_nodes(grid)
        plan = self.engine.schedule.plan(server_round)
        self._plan = plan
        self._train_started = time.perf_counter()
        messages = []
        for client in plan.clients:
            settings = ConfigRecord(
                {
                    **config,
                    "server-round": server_round,
                    "client-id": client,
                    "phase": plan.phase,
                    "attacker-index": plan.attackers.get(client, -1),
                    "experiment": self.experiment_json,
                }
            )
            content = RecordDict({ARRAYS_KEY: arrays, CONFIG_KEY: settings})
            messages.append(Message(content, nodes[client], MessageType.TRAIN))
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate the round's updates with the engine (module docstring); the new global
        arrays.
        """
        plan = self._plan
        if plan is None or plan.round != server_round:
            raise RuntimeError(
                f"aggregate_train({server_round}) without configure_train for that round"
            )
        updates = self._collect_updates(plan, list(replies))
        seconds = {"train": time.perf_counter() - self._train_started}
        row = self.engine.aggregate_round(plan, updates, seconds)
        self.last_row = row
        self.accepted[server_round] = list(row["accepted"])
        metrics = MetricRecord(
            {
                "num-clients": len(plan.clients),
                "num-accepted": len(row["accepted"]),
                "accepted-clients": list(row["accepted"]),
            }
        )
        return vector_to_arrays(self.engine.global_state, self.engine.flat.layout), metrics

    def _collect_updates(self, plan: RoundPlan, replies: list[Message]) -> torch.Tensor:
        """The (n, d) update matrix in ``plan.clients`` order; raises on a failed or missing
        reply.
        """
        client_of_node = {node: client for client, node in self.node_of_client.items()}
        by_client: dict[int, torch.Tensor] = {}
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error():
                raise RuntimeError(
                    f"round {plan.round}: client {client_of_node.get(node)} (node {node}) failed: "
                    f"{reply.error.reason}"
                )
            client = client_of_node[node]
            reported = config_int(reply.content.metric_records[METRICS_KEY], "num-examples")
            expected = int(self.engine.sample_counts[client].item())
            if reported != expected:
                raise RuntimeError(
                    f"round {plan.round}: client {client} trained on {reported} samples, its "
                    f"partition has {expected}: the nodes' data or config differ from the server's"
                )
            by_client[client] = arrays_to_vector(
                reply.content.array_records[UPDATE_KEY], self.engine.flat.layout, self.engine.device
            )
        missing = [client for client in plan.clients if client not in by_client]
        if missing:
            raise RuntimeError(
                f"round {plan.round}: no update from client(s) {missing} (timeout "
                f"{self.reply_timeout:g} s)"
            )
        return torch.stack([by_client[client] for client in plan.clients])

    # ----------------------------------------------------------------------------- evaluation
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """No client-side evaluation: ACC/ASR are measured on the server's test sets."""
        return []

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return None


def _wait_for_nodes(grid: Grid, count: int, wait_seconds: float) -> list[int]:
    """Node ids once at least ``count`` nodes are connected; RuntimeError after ``wait_seconds``."""
    deadline = time.monotonic() + wait_seconds
    while True:
        node_ids = list(grid.get_node_ids())
        if len(node_ids) >= count:
            return node_ids
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{len(node_ids)} of data.num_clients={count} SuperNodes connected within "
                f"{wait_seconds:g} s"
            )
        time.sleep(0.5)
