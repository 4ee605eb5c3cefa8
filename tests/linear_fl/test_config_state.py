"""Config validation, state save/load, NaN refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from linear_fl.config import LinearFLConfig
from linear_fl.server import fedavg
from linear_fl.state import StateError, load_state, save_state


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(ValueError, match="allowed keys: .*poison_fraction"):
        LinearFLConfig.from_dict({"seed": 1, "learning_rate": 0.1})


@pytest.mark.parametrize(
    "bad",
    [
        {"weights": "median"},
        {"attack": "sometimes"},
        {"convention": "x"},
        {"batch_size": 0},
        {"benign_fraction": 1.0},
        {"lr": -1.0},
    ],
)
def test_bad_values_raise_valueerror_naming_the_field(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        LinearFLConfig.from_dict(bad)


def test_config_round_trips_through_dict():
    cfg = LinearFLConfig(inversion_targets=(0, 3), trigger_pieces=(0, 1))
    again = LinearFLConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and cfg.lambdas == (1.0, 1.0)
    assert LinearFLConfig(convention="union-mean").lambdas == (0.5, 0.5)


def test_save_load_round_trip_and_refusals(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"W": rng.normal(size=(10, 785)), "mask": rng.uniform(size=(28, 28))}
    meta = {"config": LinearFLConfig().to_dict(), "seed": 0}
    save_state(tmp_path / "s", arrays, meta)
    back, meta_back = load_state(tmp_path / "s", expected_shapes={"W": (10, 785)})
    assert meta_back == meta and all(np.array_equal(back[k], arrays[k]) for k in arrays)
    with pytest.raises(StateError, match="expected \\(10, 784\\)"):
        load_state(tmp_path / "s", expected_shapes={"W": (10, 784)})
    with pytest.raises(StateError, match="no array 'pattern'"):
        load_state(tmp_path / "s", expected_shapes={"pattern": (1, 28, 28)})
    # a file whose content does not match its sidecar is refused
    np.savez(tmp_path / "s.npz", W=arrays["W"] + 1.0, mask=arrays["mask"])
    with pytest.raises(StateError, match="sha256"):
        load_state(tmp_path / "s")
    np.savez(tmp_path / "s.npz", W=arrays["W"][:5], mask=arrays["mask"])
    with pytest.raises(StateError, match="shape"):
        load_state(tmp_path / "s")
    with pytest.raises(StateError, match="does not exist"):
        load_state(tmp_path / "missing")
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_nan_or_inf_update_is_refused(bad_value):
    W_t = np.zeros((3, 4))
    W_bad = np.ones((3, 4))
    W_bad[1, 2] = bad_value
    with pytest.raises(ValueError, match="malicious client submitted a model with 1 NaN/inf"):
        fedavg(
            W_t, [np.ones((3, 4)), W_bad], [0.5, 0.5], names=["benign client", "malicious client"]
        )
