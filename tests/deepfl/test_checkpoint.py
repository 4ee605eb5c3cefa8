"""deepfl.checkpoint: no code ever runs from a planted checkpoint or cache entry; states round-trip
exactly.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_fixtures import micro_config
from flip_fixtures import BackdooredSetup, backdoored_setup  # noqa: F401 (fixture)

from deepfl import checkpoint
from deepfl.checkpoint import DamagedFileError
from deepfl.client import LocalData, LocalTrainer, RoundContext
from deepfl.config import TrainConfig
from deepfl.flip import FlipDefense
from deepfl.run import main
from deepfl.runner import Experiment


class Payload:
    """Unpickling this runs ``exec``: it creates ``marker`` (a stand-in for any attacker's code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


def plant(path: Path, marker: Path, forge_header: bool) -> None:
    """Write a malicious torch file at ``path``; with ``forge_header`` behind a correct SHA-256
    header.
    """
    buffer = io.BytesIO()
    torch.save({"global_state": Payload(marker)}, buffer)
    body = buffer.getvalue()
    header = (
        checkpoint.HEADER_PREFIX + hashlib.sha256(body).hexdigest().encode() + b"\n"
        if forge_header
        else b""
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + body)


def test_the_payload_is_live_under_plain_pickle(tmp_path: Path) -> None:
    """The planted file really runs code when loaded the old way (so the tests below can fail)."""
    marker = tmp_path / "pwned"
    plant(tmp_path / "evil.pt", marker, forge_header=False)
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("forge_header", [False, True])
def test_planted_checkpoint_is_refused_without_running_code(
    tmp_path: Path, forge_header: bool
) -> None:
    marker = tmp_path / "pwned"
    plant(tmp_path / "checkpoint.pt", marker, forge_header)
    with pytest.raises(DamagedFileError, match="checkpoint.pt"):
        checkpoint.load(tmp_path / "checkpoint.pt", torch.device("cpu"))
    assert not marker.exists()


@pytest.mark.slow
def test_planted_cache_entry_and_checkpoint_run_nothing_end_to_end(
    tmp_path: Path, caplog, capsys
) -> None:
    """A fresh run over a planted cache entry rebuilds it; a resume over a planted checkpoint exits
    3.
    """
    marker = tmp_path / "pwned"
    cfg = micro_config(tmp_path, run={"rounds": 2})
    experiment = Experiment(cfg, tmp_path / "run")
    cache_path = experiment._cache_path()
    assert cache_path.parent == tmp_path / "cache"
    plant(cache_path, marker, forge_header=True)
    with caplog.at_level(logging.WARNING, logger="deepfl"):
        summary = experiment.run()
    assert not marker.exists() and not summary["pretrain_cache"]["hit"]
    assert "ignoring the damaged pre-training cache entry" in caplog.text
    assert (
        checkpoint.load(cache_path, torch.device("cpu"))["key"] == experiment.pretrain_key()
    )  # rebuilt

    plant(tmp_path / "run" / "checkpoint.pt", marker, forge_header=True)
    assert main(["--resume", str(tmp_path / "run")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "checkpoint.pt cannot be loaded safely" in err[-1]
    assert not marker.exists()


def test_damaged_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    checkpoint.save_atomic(path, {"round": 3, "x": torch.arange(4)})
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DamagedFileError, match="does not match its SHA-256 header"):
        checkpoint.load(path, torch.device("cpu"))
    path.write_bytes(raw[:20])
    with pytest.raises(DamagedFileError, match="c.pt"):
        checkpoint.load(path, torch.device("cpu"))
    with pytest.raises(DamagedFileError, match="cannot be read"):
        checkpoint.load(tmp_path / "missing.pt", torch.device("cpu"))


def test_states_that_cannot_be_read_back_safely_are_refused_at_save(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="object"):
        checkpoint.save_atomic(tmp_path / "c.pt", {"s": np.array([object()], dtype=object)})
    with pytest.raises(TypeError, match="Path"):
        checkpoint.save_atomic(tmp_path / "c.pt", {"s": tmp_path})


@pytest.mark.slow
def test_flip_client_state_round_trips_exactly(
    backdoored_setup: BackdooredSetup, tmp_path: Path
) -> None:  # noqa: F811
    s = backdoored_setup
    state: dict = {}
    trainer = LocalTrainer(
        TrainConfig(lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=64, epochs=1)
    )
    ctx = RoundContext(
        round=1,
        client_id=3,
        num_classes=10,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
    )
    flip = FlipDefense(warmup_steps=8, pair_steps=6, batch_size=16, pairs_per_round=2)
    flip.train(s.clone_model(), LocalData(s.images[:200], s.labels[:200]), state, trainer, ctx)
    assert any(isinstance(value, np.ndarray) for value in state.values())
    checkpoint.save_atomic(tmp_path / "c.pt", {"client_states": {3: state}})
    restored = checkpoint.load(tmp_path / "c.pt", torch.device("cpu"))["client_states"][3]
    assert restored.keys() == state.keys()
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            assert restored[key].dtype == value.dtype, key
            np.testing.assert_array_equal(
                restored[key], value, err_msg=key
            )  # NaN == NaN (distance diagonal)
        else:
            assert restored[key] == value and type(restored[key]) is type(value), key


def test_cache_defaults_to_the_user_cache_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLIPLAB_CACHE", str(tmp_path / "root"))
    from deepfl.runner import pretrain_cache_dir

    cfg = micro_config(tmp_path, run={"cache_dir": ""})
    assert pretrain_cache_dir(cfg) == tmp_path / "root" / "deepfl" / "pretrained"


def test_a_checkpoint_of_an_older_version_still_loads_but_runs_no_code(tmp_path: Path) -> None:
    """Headerless checkpoints (written before the hash header) keep resuming: numpy arrays only."""
    state = {
        "mask": np.random.default_rng(0).random((3, 4)),
        "targets": np.array([2, 5]),
        "round": np.int64(4),
    }
    torch.save({"client_states": {3: state}}, tmp_path / "old.pt")
    restored = checkpoint.load(tmp_path / "old.pt", torch.device("cpu"), require_hash=False)[
        "client_states"
    ][3]
    np.testing.assert_array_equal(restored["mask"], state["mask"])
    assert restored["targets"].dtype == np.int64 and restored["round"] == 4
    marker = tmp_path / "pwned"
    plant(tmp_path / "evil.pt", marker, forge_header=False)
    with pytest.raises(DamagedFileError, match="cannot be loaded safely"):
        checkpoint.load(tmp_path / "evil.pt", torch.device("cpu"), require_hash=False)
    assert not marker.exists()
