"""The Flower ClientApp of a deepfl run: a SuperNode is client ``node_config["partition-id"]``.

``train`` does exactly what the native round loop does for one participant, by calling
``Experiment.train_client`` (deepfl.runner) on a process-local engine built from the experiment
config the server sends: the client's Dirichlet/IID partition of the same data, its
(seed, round, client) torch generator, local SGD, and by role

- clean pre-training round: plain local training;
- attacker (``attacker-index`` k >= 0): the configured attacker behaviour (standard DBA
  poisoning with trigger piece k, or the adaptive attacker) and the update scaled by
  ``attack.scale``;
- benign client in an attack round: the configured client defense (FLIP or none).

The reply is the update Delta_i = w_i - G (float32 arrays, deepfl.flower.records) and the local
sample count (deepfl.flower.protocol). The client's persistent states (FLIP's cache for the benign
role, the adaptive attacker's cache for the attacker role) live in Flower's per-node
``context.state`` between rounds, never in process memory: the engine's state dicts are reloaded
from ``context.state`` on every message. ``query`` answers the server's partition-id handshake;
it imports neither torch nor the engine, so a deployment SuperNode answers it quickly.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from deepfl.flower.protocol import (
    CONFIG_KEY,
    PARTITION_ID,
    PARTITION_KEY,
    config_int,
    config_str,
)

if TYPE_CHECKING:
    from deepfl.runner import Experiment

BENIGN_STATE, ATTACKER_STATE = "deepfl.client", "deepfl.attacker"

app = ClientApp()


def partition_id(context: Context) -> int:
    """The client id of this node: ``node_config["partition-id"]`` (an int >= 0)."""
    value = context.node_config.get(PARTITION_ID)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            "this SuperNode needs --node-config "
            f"'{PARTITION_ID}=<client id>' (an int >= 0), got {value!r}"
        )
    return value


@functools.lru_cache(maxsize=1)
def client_engine(experiment_json: str) -> Experiment:
    """The process's engine for one experiment config (data partition, model, behaviours), built
    once.

    Its run directory is never written: a client engine only trains.
    """
    import json
    from pathlib import Path

    from deepfl.config import from_dict
    from deepfl.runner import Experiment

    return Experiment(from_dict(json.loads(experiment_json)), Path("flower-client-unused"))


@app.query()
def query(message: Message, context: Context) -> Message:
    """Tell the server which client (partition) this node is."""
    reply = RecordDict({PARTITION_KEY: ConfigRecord({PARTITION_ID: partition_id(context)})})
    return Message(reply, reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    """One round of local training for this node's client (module docstring)."""
    settings = message.content.config_records[CONFIG_KEY]
    client = partition_id(context)
    addressed = config_int(settings, "client-id")
    if addressed != client:
        raise ValueError(
            f"the server addressed client {addressed} but this node is partition {client}"
        )
    return Message(local_round(message.content, context.state, client), reply_to=message)


def local_round(content: RecordDict, state: RecordDict, client: int) -> RecordDict:
    """The reply content of a TRAIN message for ``client``; reads and updates its ``state``
    records.
    """
    from flwr.app import MetricRecord

    from deepfl.attacks import RoundPlan
    from deepfl.flower.protocol import ARRAYS_KEY, METRICS_KEY, UPDATE_KEY
    from deepfl.flower.records import (
        arrays_to_vector,
        load_state,
        save_state,
        vector_to_arrays,
    )

    settings = content.config_records[CONFIG_KEY]
    engine = client_engine(config_str(settings, "experiment"))
    attacker_index = config_int(settings, "attacker-index")
    plan = RoundPlan(
        config_int(settings, "server-round"),
        config_str(settings, "phase"),
        [client],
        {client: attacker_index} if attacker_index >= 0 else {},
    )
    layout = engine.flat.layout
    engine.global_state = arrays_to_vector(content.array_records[ARRAYS_KEY], layout, engine.device)
    engine.client_states = {client: load_state(state, BENIGN_STATE, engine.device)}
    engine.attacker_states = {client: load_state(state, ATTACKER_STATE, engine.device)}
    update = engine.train_client(plan, client)
    for name, states in (
        (BENIGN_STATE, engine.client_states),
        (ATTACKER_STATE, engine.attacker_states),
    ):
        if states.get(client):
            save_state(state, name, states[client])
    return RecordDict(
        {
            UPDATE_KEY: vector_to_arrays(update, layout),
            METRICS_KEY: MetricRecord({"num-examples": len(engine.federation.clients[client])}),
        }
    )
