"""Single-shot attack defaults: model replacement 1/p_M, 10 poison epochs, and a real ASR spike
(THEORY.md 10).
"""

from __future__ import annotations

import pytest
from linear_fl_fixtures import small_config

from linear_fl.config import SINGLE_SHOT_MALICIOUS_EPOCHS, LinearFLConfig
from linear_fl.twin import prepare, run_twin


def test_defaults_resolve_by_attack_and_explicit_values_win():
    single, continuous = LinearFLConfig(attack="single-shot"), LinearFLConfig(attack="continuous")
    assert single.effective_malicious_local_epochs == SINGLE_SHOT_MALICIOUS_EPOCHS == 10
    assert continuous.effective_malicious_local_epochs == 1
    assert single.replace(malicious_local_epochs=3).effective_malicious_local_epochs == 3
    assert single.replacement_factor(0.25) == pytest.approx(4.0)
    assert single.replace(scale=1.5).replacement_factor(0.25) == 1.5


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"scale": float("nan")}, "scale"),
        ({"scale": True}, "scale"),
        ({"malicious_local_epochs": 0}, "malicious_local_epochs"),
    ],
)
def test_bad_single_shot_values_are_rejected(changes, match):
    with pytest.raises(ValueError, match=match):
        LinearFLConfig(**changes)


@pytest.mark.slow
def test_default_scale_is_one_over_p_m_only_in_the_attack_round(small_cache):
    s = prepare(
        small_config(
            small_cache,
            attack="single-shot",
            attack_round=2,
            weights="samples",
            benign_fraction=0.75,
        )
    )
    assert s.p_M == pytest.approx(0.25)
    assert s.replacement_scale(2) == pytest.approx(1 / s.p_M) and s.replacement_scale(1) == 1.0
    assert s.malicious_training().epochs == 10


@pytest.mark.slow
def test_single_shot_defaults_give_an_asr_spike_that_flip_removes_next_round(small_cache):
    attack_round = 3
    setup = prepare(small_config(small_cache, attack="single-shot", attack_round=attack_round))
    twin = run_twin(setup, attack_round + 1, progress=False)
    nd, d = twin.nodef, twin.defense
    assert nd.asr[attack_round - 1] < 0.05  # before the poisoning: the clean baseline
    assert nd.asr[attack_round] > max(
        0.5, 10 * nd.asr[attack_round - 1]
    )  # right after it: the spike
    assert nd.accuracy[attack_round] > 0.8  # clean accuracy stays reasonable
    # one hardening round against the implanted backdoor removes most of it; without defense it
    # lingers
    assert d.asr[attack_round + 1] < 0.5 * nd.asr[attack_round + 1]
    # the old defaults (no replacement, one epoch) leave the single round without effect
    weak = run_twin(
        prepare(
            small_config(
                small_cache,
                attack="single-shot",
                attack_round=attack_round,
                scale=1.0,
                malicious_local_epochs=1,
            )
        ),
        attack_round,
        progress=False,
    )
    assert weak.nodef.asr[attack_round] < 0.5 * nd.asr[attack_round]
