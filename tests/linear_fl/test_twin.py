"""Twin runs: determinism, pre-training quality and cache integrity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from linear_fl_fixtures import small_config

from linear_fl.config import LinearFLConfig
from linear_fl.parallel import blas_threads
from linear_fl.pretrain import cache_key
from linear_fl.twin import evaluate, prepare, run_twin


@pytest.mark.slow
def test_same_seed_gives_bit_identical_twins(small_setup, small_cache):
    a = run_twin(small_setup, 3, progress=False)
    b = run_twin(prepare(small_config(small_cache)), 3, progress=False)
    for ta, tb in ((a.nodef, b.nodef), (a.defense, b.defense)):
        assert all(np.array_equal(x, y) for x, y in zip(ta.globals, tb.globals, strict=True))
        assert all(
            np.array_equal(x["malicious"], y["malicious"])
            for x, y in zip(ta.client_models, tb.client_models, strict=True)
        )
    assert all(
        np.array_equal(x.mask, y.mask)
        for x, y in zip(a.defense.recovered_triggers, b.defense.recovered_triggers, strict=True)
    )
    # both twins share the malicious stream: identical first-round malicious update (same start W_0)
    assert np.array_equal(
        a.nodef.client_models[0]["malicious"], a.defense.client_models[0]["malicious"]
    )
    assert not np.array_equal(a.nodef.globals[1], a.defense.globals[1])
    assert len(a.defense.trigger_errors) == 3 and len(a.nodef.globals) == 4
    c = run_twin(prepare(small_config(small_cache, seed=1)), 1, progress=False)
    assert not np.array_equal(c.nodef.globals[1], a.nodef.globals[1])


@pytest.mark.slow
def test_background_thread_gives_the_sequential_bits_and_evaluation_can_be_skipped(small_setup):
    one = run_twin(small_setup, 3, progress=False, threads=1)
    two = run_twin(small_setup, 3, progress=False, threads=2, evaluate=False)
    for ta, tb in ((one.nodef, two.nodef), (one.defense, two.defense)):
        assert all(np.array_equal(x, y) for x, y in zip(ta.globals, tb.globals, strict=True))
    assert [t.selected_target for t in one.defense.inversions] == [
        t.selected_target for t in two.defense.inversions
    ]
    assert len(one.nodef.accuracy) == 4 and two.nodef.accuracy == [] and two.defense.asr == []
    with pytest.raises(ValueError, match="threads"):
        run_twin(small_setup, 1, progress=False, threads=3)


@pytest.mark.slow
def test_single_shot_poisons_only_in_its_round(small_cache):
    s = prepare(small_config(small_cache, attack="single-shot", attack_round=2, scale=2.0))
    assert [s.poisons_in(r) for r in (1, 2, 3)] == [False, True, False]
    assert s.replacement_scale(2) == 2.0 and s.replacement_scale(3) == 1.0


@pytest.mark.slow
def test_pretraining_on_full_mnist_reaches_high_80s():
    setup = prepare(LinearFLConfig())  # default cache: instant after the first run
    acc, asr = evaluate(setup, setup.W0)
    print(
        f"pre-train: {setup.pretrain.rounds} rounds, converged={setup.pretrain.converged}, test "
        f"acc {acc:.4f}"
    )
    assert acc >= 0.87 and asr < 0.05
    assert setup.backdoor_Xa.shape[0] == 9020  # MNIST test images whose label is not target 0


@pytest.mark.slow
def test_cache_is_reused_and_corruption_is_detected(small_cache, tmp_path):
    cfg = small_config(str(tmp_path))
    first = prepare(cfg)
    second = prepare(cfg)
    assert not first.pretrain.from_cache and second.pretrain.from_cache
    assert np.array_equal(first.W0, second.W0)
    npz = next(tmp_path.glob("pretrain-*.npz"))
    np.savez(npz, W=first.W0 * 2.0, losses=first.pretrain.losses)
    with pytest.warns(RuntimeWarning, match="recomputing"):
        third = prepare(cfg)
    assert not third.pretrain.from_cache and np.array_equal(third.W0, first.W0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prepare(cfg).pretrain.from_cache


def test_the_cache_key_names_the_blas_thread_count(tmp_path):
    """A model pre-trained with another BLAS thread count differs in the last bits (another
    summation order), so it is not reused for this count."""
    cfg = small_config(str(tmp_path))
    with blas_threads(1):
        one = cache_key(cfg, "data")
        assert cache_key(cfg, "data") == one
    with blas_threads(2):
        assert cache_key(cfg, "data") != one


def test_twin_result_saves_and_loads(small_setup, tmp_path):
    from linear_fl.state import load_state

    res = run_twin(small_setup, 2, progress=False)
    res.save(str(tmp_path / "twin"))
    arrays, meta = load_state(
        tmp_path / "twin", expected_shapes={"nodef_globals": (3, *small_setup.W0.shape)}
    )
    assert np.array_equal(arrays["defense_globals"][2], res.defense.globals[2])
    assert meta["seed"] == small_setup.config.seed and arrays["recovered_masks"].shape == (
        2,
        28,
        28,
    )


@pytest.mark.slow
def test_minibatch_multi_epoch_training_runs_and_is_deterministic(small_cache):
    from linear_fl.probe import one_round_probe

    cfg = small_config(small_cache, batch_size=500, local_epochs=2, malicious_batch_size=250)
    a, b = (run_twin(prepare(cfg), 1, progress=False) for _ in range(2))
    assert np.array_equal(a.defense.globals[1], b.defense.globals[1])
    assert np.all(np.isfinite(a.defense.globals[1])) and not np.array_equal(
        a.nodef.globals[1], a.defense.globals[1]
    )
    p = one_round_probe(a.setup, a.setup.W0, 1, recovered_trigger=a.defense.recovered_triggers[0])
    assert not p.closed_form_applies
    assert np.allclose(
        p.deltaW_simulated.sum(axis=0), 0.0, atol=1e-12
    )  # 1^T DeltaW = 0 holds for any E
