"""`python -m theory.verify --attack single-shot`: the attack round follows --round, the twin pair
shows the no-defense ASR spike and the probe (round R+1 from W^nd_R) is the first hardening round
after the poisoning."""

from __future__ import annotations

import json

import pytest

from theory.verify import build_parser, main, make_config

SLICE = [
    "--train-limit",
    "4000",
    "--test-limit",
    "1000",
    "--no-progress",
    "--config",
    "pretrain_max_rounds=30",
    "inversion_maxiter=8",
    "inversion_subsample=400",
]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--attack", "single-shot", "--round", "7"], 7),
        (["--attack", "single-shot", "--round", "7", "--config", "attack_round=3"], 3),
        (["--attack", "continuous", "--round", "7"], 1),
    ],
)
def test_attack_round_defaults_to_round_only_for_single_shot(argv, expected):
    assert make_config(build_parser().parse_args(argv)).attack_round == expected


def _run(tmp_path, name: str, extra: list[str]) -> dict:
    path = tmp_path / f"{name}.json"
    status = main(
        [
            "--attack",
            "single-shot",
            "--round",
            "3",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--json",
            str(path),
            *SLICE,
            *extra,
        ]
    )
    assert status == 0
    return json.loads(path.read_text())


@pytest.mark.slow
def test_single_shot_twin_pair_shows_the_spike_and_the_probe_hardens_against_it(tmp_path, capsys):
    payload = _run(tmp_path, "default", [])
    out = capsys.readouterr().out
    assert payload["config"]["attack_round"] == 3 and "attack_round=3" in out
    assert payload["probe"]["round"] == 4 and payload["probe"]["start_round"] == 3
    assert payload["probe"]["poisoned"] is False
    twin = payload["metrics"]["no_defense"]
    assert twin["asr"] > 0.2 and twin["acc"] > 0.8  # the spike right after the poisoning round
    probe = payload["probe"]["metrics"]
    assert (
        probe["defense"]["asr"] < 0.5 * probe["no_defense"]["asr"]
    )  # FLIP's first hardening round
    assert out.count("Table 3 analogue") == 2 and "probe pair: round 4 from W^nd_3" in out
    # poisoning before R: the twin pair shows a decayed backdoor (so the default really moved the
    # attack)
    early = _run(tmp_path, "early", ["attack_round=1"])
    assert early["config"]["attack_round"] == 1
    assert (
        early["metrics"]["no_defense"]["asr"] < twin["asr"] - 0.1
    )  # decays once the attacker is benign
