"""Batched FLIP (issue 13 item 2): the inversions of a round's benign clients in one optimisation
per stage agree with client-by-client inversion, in the component and in the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_fixtures import micro_config, single_thread
from flip_fixtures import BackdooredSetup, backdoored_setup  # noqa: F401  (session fixture)

from deepfl.client import LocalData, RoundContext
from deepfl.flip import FlipConfig
from deepfl.flip import defense as flip_defense
from deepfl.flip.batched import plan_round
from deepfl.flip.plan import plan_hardening
from deepfl.io import read_jsonl
from deepfl.runner import Experiment

ATOL = 1e-4  # float round-off of the larger batched forward pass, over a few dozen Adam steps


def context(round_index: int, client: int) -> RoundContext:
    return RoundContext(
        round_index,
        client,
        10,
        torch.device("cpu"),
        torch.Generator().manual_seed(100 * round_index + client),
    )


def _compare(per_client: dict, batched: dict) -> None:
    for key in (
        "flip_universal_masks",
        "flip_universal_patterns",
        "flip_pair_masks",
        "flip_pair_patterns",
    ):
        if key in per_client:
            np.testing.assert_allclose(batched[key], per_client[key], atol=ATOL, err_msg=key)
    np.testing.assert_allclose(
        batched["flip_distance"], per_client["flip_distance"], rtol=1e-3, atol=1e-6
    )
    for key in ("flip_last_pairs", "flip_focus_targets", "flip_warmup_round"):
        np.testing.assert_array_equal(batched[key], per_client[key], err_msg=key)


@pytest.mark.slow
def test_batched_plans_agree_with_per_client_plans(backdoored_setup: BackdooredSetup):
    """Round 1: clients 0 and 1 warm up; round 2: they refresh (12 steps) while client 2 warms up
    (15 steps): two step groups in the universal stage, every client's pairs in one optimisation."""
    s = backdoored_setup
    datas = [LocalData(s.images[a:b], s.labels[a:b]) for a, b in ((0, 250), (250, 420), (420, 700))]
    config = FlipConfig(
        warmup_steps=15, focus_refresh_steps=12, pair_steps=10, batch_size=8, patience=3
    )
    model = s.clone_model()
    per_client: list[dict] = [{}, {}, {}]
    batched: list[dict] = [{}, {}, {}]
    for round_index, clients in ((1, [0, 1]), (2, [0, 1, 2])):
        for i in clients:
            plan_hardening(config, model, datas[i], per_client[i], context(round_index, i))
        plans = plan_round(
            config, model, [(datas[i], batched[i], context(round_index, i)) for i in clients]
        )
        assert len(plans) == len(clients) and all(plan.pairs for plan in plans)
        for i in clients:
            _compare(per_client[i], batched[i])
    assert batched[0]["flip_refresh_round"] == 2 and batched[2]["flip_warmup_round"] == 2


def test_batched_paper_mode_sizes_pairs_per_client(backdoored_setup: BackdooredSetup):
    s = backdoored_setup
    datas = [LocalData(s.images[a:b], s.labels[a:b]) for a, b in ((0, 300), (300, 500))]
    config = FlipConfig.paper(warmup_steps=10, pair_steps=6, batch_size=8)
    model = s.clone_model()
    plans = plan_round(
        config, model, [(d, {}, context(1, i)) for i, d in enumerate(datas)], batch_steps=[4, 2]
    )
    assert [len(plan.pairs) for plan in plans] == [4, 2]  # one pair per mini-batch
    alone = plan_hardening(config, model, datas[1], {}, context(1, 1), batch_steps=2)
    for mine, reference in zip(plans[1].pairs, alone.pairs, strict=True):
        for a, b in zip(mine, reference, strict=True):
            assert (a.sources, a.target) == (b.sources, b.target)
            np.testing.assert_allclose(a.triggers[0].mask, b.triggers[0].mask, atol=ATOL)


@pytest.mark.slow
def test_engine_batches_the_benign_clients_and_matches_client_by_client(tmp_path, monkeypatch):
    calls = {"per_client": 0}
    original = flip_defense.plan_hardening

    def counting(*args, **kwargs):
        calls["per_client"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(flip_defense, "plan_hardening", counting)
    rows = {}
    for batch in (True, False):
        params = {
            "mode": "fliplab",
            "warmup_steps": 10,
            "focus_refresh_steps": 10,
            "pair_steps": 5,
            "batch_size": 8,
            "batch_clients": batch,
        }
        cfg = micro_config(
            tmp_path, defense={"client": "flip", "client_params": params}, run={"rounds": 3}
        )
        with single_thread():
            Experiment(cfg, tmp_path / str(batch)).run()
        rows[batch] = [
            row
            for row in read_jsonl(tmp_path / str(batch) / "metrics.jsonl")
            if row["phase"] == "attack"
        ]
        if batch:
            assert calls["per_client"] == 0  # every benign client used its prepared plan
    assert calls["per_client"] == 4  # rounds 2-3, 2 benign clients each
    for a, b in zip(rows[True], rows[False], strict=True):
        assert a["clients"] == b["clients"]
        assert (
            abs(a["acc"]["0.0"] - b["acc"]["0.0"]) <= 0.01
            and abs(a["asr"]["0.0"] - b["asr"]["0.0"]) <= 0.01
        )
