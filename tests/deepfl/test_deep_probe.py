"""deepfl.probe on a micro run (real MNIST slice): part (a) is exact, the probe's rounds are the
engine's rounds, a replay gives the kept checkpoint, and the JSON reproduces from the saved
state."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch
from engine_fixtures import micro_config, single_thread

from deepfl.checkpoint import CHECKPOINT_NAME, load
from deepfl.flip import FlipDefense
from deepfl.probe import ProbeRound, load_round_start
from deepfl.probe_rounds import full_round
from deepfl.runner import Experiment
from theory.verify import main

# Slow: every test uses the module's trained micro run (~10 s to build).
pytestmark = pytest.mark.slow

FLIP = {"warmup_steps": 5, "pair_steps": 3, "focus_refresh_steps": 3}
FLIP_ARG = json.dumps(FLIP)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 3-round micro run (continuous attack, no defense) that kept its round-2 checkpoint."""
    folder = tmp_path_factory.mktemp("probe")
    cfg = micro_config(folder, run={"rounds": 3, "keep_checkpoints": [2]})
    with single_thread():
        Experiment(cfg, folder / "run").run()
    return folder / "run"


@pytest.fixture(scope="module")
def cli_outputs(run_dir, tmp_path_factory):
    """``theory.verify --deep`` at round 2 with --json and --save-state, and --from-state on that
    state.
    """
    folder = tmp_path_factory.mktemp("cli")
    with single_thread():
        status = main(
            [
                "--deep",
                str(run_dir),
                "--round",
                "2",
                "--flip-params",
                FLIP_ARG,
                "--no-progress",
                "--json",
                str(folder / "probe.json"),
                "--save-state",
                str(folder / "state"),
            ]
        )
    again = main(["--from-state", str(folder / "state"), "--json", str(folder / "again.json")])
    return status, again, folder


def test_last_layer_probe_is_exact(cli_outputs):
    status, _, folder = cli_outputs
    payload = json.loads((folder / "probe.json").read_text())
    assert status == 0, [c for c in payload["checks"] if c["must_hold"] and not c["pass"]]
    assert payload["source"].startswith("checkpoint") and payload["poisoned"]
    for part in ("last_layer_sgd", "last_layer_protocol"):
        assert payload[part]["violations_clean"] == 0 and payload[part]["violations_backdoor"] == 0
    protocol = payload["last_layer_protocol"]
    assert protocol["hardening_clients"] >= 1 and protocol["deltaW_norm"] > 0  # FLIP did harden
    assert protocol["deltaW_rel_error"] < 1e-10  # float64 probe
    assert protocol["theorem2"]["frozen_rel_error"] < 1e-10
    assert payload["last_layer_sgd"]["logit_error"] < 1e-9
    assert (
        payload["trigger_error"]["n_pairs"] > 0 and payload["trigger_error"]["feature_inf_max"] > 0
    )
    assert 0.0 <= payload["all_layers"]["clean"]["inside_fraction"] <= 1.0
    names = [c["name"] for c in payload["checks"] if c["must_hold"]]
    assert "Thm 1 (a) SGD clean" in names and "Thm 1 (a) protocol backdoor" in names


def test_json_reproduces_from_the_saved_state(cli_outputs):
    _, again, folder = cli_outputs
    assert again == 0
    assert (folder / "probe.json").read_text() == (folder / "again.json").read_text()
    assert (folder / "probe.samples.npz").exists()


@pytest.fixture(scope="module")
def probe(run_dir):
    with single_thread():
        start = load_round_start(run_dir, 2)
        probe = ProbeRound(start, FLIP, torch.device("cpu"), run_dir)
        return probe, probe.flip_plans()


def test_no_defense_branch_of_the_full_round_is_the_runs_round(probe, run_dir):
    probe_round, plans = probe
    with single_thread():
        G_nodef, G_def = full_round(probe_round, plans)
    run_round_3 = load(run_dir / CHECKPOINT_NAME, torch.device("cpu"))
    assert run_round_3["round"] == 3
    assert torch.equal(G_nodef, run_round_3["global_state"])
    assert not torch.equal(G_def, G_nodef)


def test_flip_branch_is_the_engines_flip_defense(probe):
    probe_round, plans = probe
    exp = probe_round.exp
    client = next(c for c in probe_round.benign if plans[c].directions)
    with single_thread():
        exp.flat.set(probe_round.start.global_state)
        FlipDefense(true_trigger=exp.test_trigger, **FLIP).train(
            exp.model,
            probe_round.data(client),
            copy.deepcopy(probe_round.start.client_states.get(client, {})),
            exp.benign_trainer,
            probe_round.context(client),
        )
        engine = exp.flat.get()
        exp.flat.set(probe_round.start.global_state)
        probe_round.train_benign(exp.model, probe_round.data(client), client, plans[client])
    assert torch.equal(exp.flat.get(), engine)


def test_replay_recreates_the_kept_checkpoint(run_dir, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "config.json", bare / "config.json")
    with single_thread():
        replayed = load_round_start(bare, 2, replay_dir=tmp_path / "replay")
    kept = load_round_start(run_dir, 2)
    assert replayed.source.startswith("replay") and kept.source.startswith("checkpoint")
    assert torch.equal(replayed.global_state, kept.global_state)
    with pytest.raises(ValueError, match="already past round 1"):
        load_round_start(bare, 1, replay_dir=tmp_path / "replay")
    with pytest.raises(ValueError, match="run.rounds"):
        load_round_start(bare, 7)


def test_only_fedavg_is_supported(run_dir, tmp_path):
    start = load_round_start(run_dir, 2)
    other = copy.copy(start.cfg)
    other.defense = copy.copy(start.cfg.defense)
    other.defense.server = "median"
    start = type(start)(other, start.round_index, start.global_state, {}, {}, start.source)
    with pytest.raises(ValueError, match="fedavg"):
        ProbeRound(start, FLIP, torch.device("cpu"), tmp_path)
