"""Helpers of the Flower tests: skip without flwr (fail instead in CI), tiny FLIP, native reference
runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

REQUIRE_ENV = "FLIPLAB_REQUIRE_FLOWER"

# FLIP with a handful of optimisation steps: every code path (warm-up, refresh, pairs, hardening),
# seconds of CPU.
# batch_clients=False: a Flower node trains one client, so its FLIP inverts client by client; the
# native reference
# does the same for bit-identical states (the native engine's batched inversion agrees with it only
# to float32
# tolerance, tests/deepfl/test_flip_batched.py).
TINY_FLIP: dict[str, Any] = {
    "warmup_steps": 3,
    "pair_steps": 2,
    "focus_refresh_steps": 2,
    "patience": 1,
    "num_augmented": 8,
    "pairs_per_round": 1,
    "batch_clients": False,
}


def require(module: str) -> ModuleType:
    """Import ``module`` (flwr, ray); skip the test module without it, unless
    FLIPLAB_REQUIRE_FLOWER=1 (set by .ci/run), where a missing package is an error: CI must run the
    Flower tests."""
    if os.environ.get(REQUIRE_ENV) == "1":
        try:
            return __import__(module)
        except ImportError as error:
            raise ImportError(
                f"{REQUIRE_ENV}=1 but {module!r} is not importable ({error}); install the extra: "
                "pip install -e '.[flower]'"
            ) from error
    return pytest.importorskip(
        module,
        reason=f"{module} is not installed (pip install -e '.[flower]'); "
        f"CI sets {REQUIRE_ENV}=1 and runs these tests",
    )


def comparable_rows(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl rows without wall-clock timings."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]


def assert_same_run(flower_dir: Path, native_dir: Path, tolerance: float = 1e-6) -> None:
    """Same round metrics (clients, attackers, accepted, ACC/ASR at every tau) and final
    probabilities.
    """
    flower_rows, native_rows = comparable_rows(flower_dir), comparable_rows(native_dir)
    assert len(flower_rows) == len(native_rows)
    for flower_row, native_row in zip(flower_rows, native_rows, strict=True):
        for key in ("round", "phase", "clients", "attackers", "accepted"):
            assert flower_row[key] == native_row[key], (key, flower_row, native_row)
        for key in ("acc", "asr"):
            assert flower_row[key].keys() == native_row[key].keys()
            for tau, value in native_row[key].items():
                assert flower_row[key][tau] == pytest.approx(value, abs=tolerance), (
                    key,
                    tau,
                    flower_row["round"],
                )
    with (
        np.load(flower_dir / "confidences.npz") as flower,
        np.load(native_dir / "confidences.npz") as native,
    ):
        for name in ("clean_probs", "backdoor_probs"):
            np.testing.assert_allclose(flower[name], native[name], atol=tolerance, rtol=0)


def assert_same_state(got: dict, expected: dict) -> None:
    """Same keys, types, dtypes and values (arrays bit for bit; plain values as the same JSON
    text).
    """
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert type(got[key]) is type(value), key
        if isinstance(value, (np.ndarray, np.generic)):
            assert got[key].dtype == value.dtype
            np.testing.assert_array_equal(got[key], value)
        elif isinstance(value, torch.Tensor):
            assert got[key].dtype == value.dtype and torch.equal(got[key], value)
        else:  # plain values: the same JSON text (exact float repr, NaN included)
            assert json.dumps(got[key]) == json.dumps(value), key


class InProcessGrid:
    """A Flower ``Grid`` whose nodes run the ClientApp in this process, one Context per node.

    Node ids are arbitrary large integers (as Flower's), in shuffled partition order, so the tests
    see the strategy map nodes to clients through the partition-id handshake.
    """

    def __init__(self, client_app: Any, num_nodes: int, fail_node: int | None = None) -> None:
        from flwr.app import Context, RecordDict

        order = np.random.default_rng(1).permutation(num_nodes)
        self.client_app = client_app
        self.contexts = {
            10**12 + 7919 * int(partition): Context(
                run_id=1,
                node_id=10**12 + 7919 * int(partition),
                node_config={"partition-id": int(partition)},
                state=RecordDict(),
                run_config={},
            )
            for partition in order
        }
        self.fail_node = fail_node
        self.sent: list[Any] = []

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def context_of(self, partition: int) -> Any:
        return next(c for c in self.contexts.values() if c.node_config["partition-id"] == partition)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Any]:
        """Deliver each message to its node's ClientApp; a node's error becomes an error reply."""
        from flwr.app import Error, Message

        replies = []
        for message in messages:
            self.sent.append(message)
            node = message.metadata.dst_node_id
            if node == self.fail_node and message.metadata.message_type == "train":
                replies.append(Message(Error(code=0, reason="node unplugged"), reply_to=message))
                continue
            replies.append(self.client_app(message, self.contexts[node]))
        return replies
