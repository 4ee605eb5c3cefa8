"""DefenseStrategy + ClientApp + run directory on an in-process Grid: the native run, round for
round.

The Grid here delivers messages to the real ClientApp in this process (no Ray, no sockets), so
these tests check the Flower logic itself: node <-> client mapping, the schedule's sampling,
aggregation by deepfl's defenses under both global rules, FLIP state kept in context.state.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flower_fixtures import (
    TINY_FLIP,
    InProcessGrid,
    assert_same_run,
    assert_same_state,
    require,
)

require("flwr")
from engine_fixtures import micro_config, single_thread
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.supercore.task_identity import TaskIdentity

from deepfl.flower.client_app import ATTACKER_STATE, BENIGN_STATE
from deepfl.flower.client_app import app as client_app
from deepfl.flower.records import load_state
from deepfl.flower.server_app import ServerSettings, run_server
from deepfl.runner import Experiment


@pytest.fixture(autouse=True)
def server_identity() -> None:
    """Messages are created as the SuperLink's (what Flower's runtimes set in a ServerApp
    process).
    """
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, SUPERLINK_NODE_ID, 1


def _without_timings(state: dict) -> dict:
    """FLIP's state with the wall-clock entries of its stats dropped (the rest must match
    exactly).
    """
    stats = {
        key: value for key, value in state["flip_last_stats"].items() if not key.endswith("seconds")
    }
    return {**state, "flip_last_stats": stats}


def _native_and_flower(tmp_path: Path, **sections: dict) -> tuple[Experiment, InProcessGrid]:
    cfg = micro_config(tmp_path, **sections)
    native = Experiment(cfg, tmp_path / "native")
    grid = InProcessGrid(client_app, cfg.data.num_clients)
    with single_thread():
        native.run()
        summary = run_server(
            grid,
            cfg,
            tmp_path / "flower",  # type: ignore[arg-type]
            ServerSettings(node_wait_seconds=1.0),
        )
    assert (
        summary["engine"]["name"] == "flower"
        and len(summary["engine"]["nodes"]) == cfg.data.num_clients
    )
    assert_same_run(tmp_path / "flower", tmp_path / "native")
    return native, grid


@pytest.mark.slow
def test_flip_run_matches_native_and_flip_state_lives_in_context_state(tmp_path: Path) -> None:
    native, grid = _native_and_flower(
        tmp_path, defense={"client": "flip", "client_params": TINY_FLIP}
    )
    plans = [native.schedule.plan(r) for r in range(2, native.cfg.run.rounds + 1)]
    benign_rounds = {
        c: sum(c in p.clients and c not in p.attackers for p in plans) for c in native.client_states
    }
    assert (
        max(benign_rounds.values()) >= 2
    )  # some client carried its FLIP cache from one round to a later one
    for client, state in native.client_states.items():
        restored = load_state(grid.context_of(client).state, BENIGN_STATE)
        assert restored["flip_times_selected"] == benign_rounds[client]
        assert_same_state(_without_timings(restored), _without_timings(state))
    for client in range(native.cfg.data.num_clients):
        if client not in native.attacker_states:
            assert load_state(grid.context_of(client).state, ATTACKER_STATE) == {}


@pytest.mark.parametrize(
    "sections",
    [
        {
            "defense": {"server": "multikrum"},
            "server": {"rule": "sample-weighted", "clients_per_round": 5},
        },
        {"defense": {"server": "fltrust"}},
    ],
    ids=["multikrum-sample-weighted", "fltrust-global-lr"],
)
@pytest.mark.slow
def test_server_defenses_and_global_rules_match_native(tmp_path: Path, sections: dict) -> None:
    native, _ = _native_and_flower(tmp_path, **sections)
    rows = [row for row in (tmp_path / "flower" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == native.cfg.run.rounds
    if (
        sections["defense"]["server"] == "multikrum"
    ):  # the aggregator dropped someone, and that is recorded
        import json

        attack_rows = [json.loads(row) for row in rows if json.loads(row)["phase"] == "attack"]
        assert all(
            len(row["accepted"]) == 4 and set(row["accepted"]) < set(row["clients"])
            for row in attack_rows
        )


@pytest.mark.slow
def test_a_failed_client_stops_the_run_with_its_reason(tmp_path: Path) -> None:
    cfg = micro_config(
        tmp_path, attack={"kind": "none"}, run={"rounds": 8}
    )  # every client is planned once
    grid = InProcessGrid(client_app, cfg.data.num_clients)
    grid.fail_node = next(iter(grid.contexts))
    with single_thread(), pytest.raises(RuntimeError, match="node unplugged"):
        run_server(grid, cfg, tmp_path / "flower")  # type: ignore[arg-type]


@pytest.mark.slow
def test_nodes_must_cover_every_partition_once(tmp_path: Path) -> None:
    cfg = micro_config(tmp_path)
    grid = InProcessGrid(client_app, cfg.data.num_clients)
    first, second = list(grid.contexts.values())[:2]
    second.node_config["partition-id"] = first.node_config["partition-id"]
    with pytest.raises(RuntimeError, match="two nodes"):
        run_server(grid, cfg, tmp_path / "flower")  # type: ignore[arg-type]
    too_few = InProcessGrid(client_app, cfg.data.num_clients - 1)
    with pytest.raises(RuntimeError, match="5 of data.num_clients=6 SuperNodes connected"):
        run_server(too_few, cfg, tmp_path / "flower-2", ServerSettings(node_wait_seconds=0.5))  # type: ignore[arg-type]
