"""Config layering, validation messages, presets and the CLI front end (deepfl.config,
deepfl.run).
"""

from __future__ import annotations

import json

import pytest

from deepfl.config import ConfigError, load_file, parse_override, resolve
from deepfl.presets import preset
from deepfl.run import main


def test_paper_preset_matches_the_released_mnist_schedule() -> None:
    cfg = resolve(preset("paper"), {"attack": {"kind": "single-shot"}})
    assert (cfg.data.num_clients, cfg.data.alpha, cfg.server.clients_per_round) == (100, 0.5, 10)
    assert (cfg.run.pretrain_rounds, cfg.run.rounds, cfg.attack_start) == (10, 100, 11)
    assert cfg.single_shot_rounds == [12, 14, 16, 18]
    assert cfg.attack.scale == 100.0 and cfg.attackers_per_round == 1
    continuous = resolve(preset("paper"))
    assert continuous.attack.scale == 1.0 and continuous.attackers_per_round == 4
    assert (continuous.attack.lr, continuous.attack.epochs, continuous.attack.num_poison) == (
        0.05,
        10,
        20,
    )


def test_dataset_defaults_sit_below_explicit_values() -> None:
    cifar = resolve({"data": {"dataset": "cifar10"}})
    assert cifar.model.name == "resnet18" and cifar.attack.epochs == 6 and cifar.benign.epochs == 2
    assert cifar.run.pretrain_rounds == 200
    explicit = resolve(
        {"data": {"dataset": "cifar10"}}, {"attack": {"epochs": 3}, "model": {"name": "linear"}}
    )
    assert explicit.attack.epochs == 3 and explicit.model.name == "linear"


def test_misspelled_section_names_the_section_and_its_keys() -> None:
    with pytest.raises(ConfigError) as error:
        resolve({"atack": {"kind": "continuous"}})
    message = str(error.value)
    assert (
        "unknown key 'atack.kind'" in message and "[attack]" in message and "start_round" in message
    )


@pytest.mark.parametrize(
    "layer, fragment",
    [
        ({"attack": {"knd": "x"}}, "in [attack]; allowed keys: kind"),
        (
            {"attack": {"kind": "sometimes"}},
            "attack.kind must be one of none, single-shot, continuous",
        ),
        ({"run": {"rounds": "ten"}}, "run.rounds must be an int in [1, inf); got 'ten'"),
        (
            {"server": {"clients_per_round": 101}},
            "server.clients_per_round must be in [1, data.num_clients=100]",
        ),
        (
            {"run": {"taus": [0.0, 1.5]}},
            "run.taus must be a non-empty list of finite floats in [0, 1]",
        ),
        ({"attack": {"start_round": 5}}, "attack.start_round must be after the clean pre-training"),
        ({"data": {"dataset": "imagenet"}}, "data.dataset must be one of"),
        ({"colour": 3}, "in the top level; allowed keys: seed, device, data"),
    ],
)
def test_impossible_values_are_rejected_with_what_is_allowed(layer: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as error:
        resolve(layer)
    assert fragment in str(error.value)


def test_overrides_parse_json_values_and_dotted_keys() -> None:
    assert parse_override("run.taus=[0, 0.4]") == {"run": {"taus": [0, 0.4]}}
    assert parse_override("attack.kind=single-shot") == {"attack": {"kind": "single-shot"}}
    assert parse_override("seed=7") == {"seed": 7}
    with pytest.raises(ConfigError):
        parse_override("attack.kind")
    cfg = resolve(parse_override("run.taus=[0, 0.4]"))
    assert cfg.run.taus == [0.0, 0.4]


def test_toml_and_json_files_load(tmp_path) -> None:
    toml_file = tmp_path / "exp.toml"
    toml_file.write_text('seed = 3\n[attack]\nkind = "single-shot"\nrounds = [12, 16]\n')
    cfg = resolve(load_file(toml_file))
    assert cfg.seed == 3 and cfg.single_shot_rounds == [12, 16]
    json_file = tmp_path / "exp.json"
    json_file.write_text(json.dumps(cfg.to_dict()))
    assert resolve(load_file(json_file)) == cfg


def test_cli_reports_config_errors_and_prints_resolved_config(capsys) -> None:
    assert main(["--preset", "micro", "--set", "atack.kind=none"]) == 2
    assert "did you mean [attack]" in capsys.readouterr().err
    assert (
        main(
            [
                "--preset",
                "cpu-small",
                "--attack",
                "single-shot",
                "--defense",
                "krum",
                "--print-config",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["attack"]["kind"] == "single-shot" and printed["defense"]["server"] == "krum"
    assert (
        printed["data"]["num_clients"] == 20 and printed["run"]["rounds"] == 70
    )  # preset, not the defaults (100, 100)
    assert printed["attack"]["scale"] == 100.0  # model replacement n / eta_g = 10 / 0.1
