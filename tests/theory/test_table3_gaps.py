"""theory.table3_gaps on a small real MNIST slice, and the --protocol option of theory.verify."""

from __future__ import annotations

import json

import numpy as np
import pytest

from theory import table3_gaps as gaps
from theory.protocols import PROTOCOLS
from theory.verify import build_parser, make_config

SMALL = {
    "max_train_samples": 3000,
    "max_test_samples": 600,
    "inversion_subsample": 300,
    "inversion_maxiter": 3,
    "pretrain_max_rounds": 5,
}


@pytest.fixture(scope="module")
def small_setup(tmp_path_factory):
    from linear_fl.twin import prepare

    return prepare({**SMALL, "cache_dir": str(tmp_path_factory.mktemp("cache"))})


@pytest.mark.slow
def test_default_variants_reproduce_the_twin_run_bit_for_bit(small_setup):
    from linear_fl.twin import run_twin

    twin = run_twin(small_setup, 3, progress=False, evaluate=False)
    W_def, selected = gaps.defense_model(small_setup, 3, gaps.HARDENINGS[0])
    assert np.array_equal(W_def, twin.defense.globals[3])
    assert selected == [inv.selected_target for inv in twin.defense.inversions]
    W_nd = gaps.no_defense_models(small_setup, 3, [2, 3])
    assert np.array_equal(W_nd[2], twin.nodef.globals[2]) and np.array_equal(
        W_nd[3], twin.nodef.globals[3]
    )


def test_in_place_fraction_one_is_hardening_on_stamped_rows_only(small_setup):
    s, rng = small_setup, np.random.default_rng(0)
    full = gaps.hardened_update(s.W0, s.benign, s.config, s.true_trigger, (0.0, 1.0), None, rng)
    in_place = gaps.hardened_update(s.W0, s.benign, s.config, s.true_trigger, (1.0, 1.0), 1.0, rng)
    np.testing.assert_allclose(in_place, full, rtol=1e-12, atol=1e-15)
    half = gaps.hardened_update(s.W0, s.benign, s.config, s.true_trigger, (1.0, 1.0), 0.5, rng)
    assert not np.allclose(half, full)


@pytest.mark.slow
def test_main_writes_json_and_markdown_from_the_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(gaps, "HARDENINGS", gaps.HARDENINGS[:2])
    monkeypatch.setattr(gaps, "SCAN_PROTOCOLS", (gaps.SCAN_PROTOCOLS[0], gaps.SCAN_PROTOCOLS[-1]))
    config = [
        f"{k}={json.dumps(v)}" for k, v in {**SMALL, "cache_dir": str(tmp_path / "c")}.items()
    ]
    status = gaps.main(
        [
            "--round",
            "2",
            "--json",
            str(tmp_path / "g.json"),
            "--markdown",
            str(tmp_path / "g.md"),
            "--config",
            *config,
        ]
    )
    payload = json.loads((tmp_path / "g.json").read_text())
    text = (tmp_path / "g.md").read_text()
    assert status == 0 and len(payload["accuracy_cost"]) == 2 and len(payload["protocols"]) == 2
    first = payload["accuracy_cost"][0]
    assert (
        f"| FLIP (default) | the twin of theory.verify | {first['defense']['acc@0.4']:.2f} / "
        in text
    )
    assert payload["protocols"][1]["by_round"].keys() == {
        "2"
    }  # single-shot: the poisoning round only
    assert payload["mechanism"]["train_images"] == 3000 and "## C." in text


def test_protocol_option_sets_config_and_round_and_config_still_wins():
    parse = build_parser().parse_args
    args = parse(["--protocol", "paper-table3"])
    cfg = make_config(args)
    assert args.round == PROTOCOLS["paper-table3"].round("continuous") == 5
    assert cfg.poison_fraction == PROTOCOLS["paper-table3"].config("continuous")["poison_fraction"]
    args = parse(
        [
            "--protocol",
            "paper-table3",
            "--attack",
            "single-shot",
            "--round",
            "7",
            "--config",
            "malicious_lr=0.1",
        ]
    )
    cfg = make_config(args)
    assert (args.round, cfg.attack_round, cfg.poison_fraction, cfg.malicious_lr) == (7, 7, 0.2, 0.1)
    args = parse(["--protocol", "paper-table3", "--config", "poison_fraction=0.25"])
    assert make_config(args).poison_fraction == 0.25
    default = parse([])
    assert make_config(default).poison_fraction == 20 / 64 and default.round == 50
    with pytest.raises(SystemExit):
        parse(["--protocol", "nope"])
