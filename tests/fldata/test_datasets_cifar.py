"""CIFAR-10 readers on small synthetic files: binary batches (tar.gz / tar.xz / folder), python
batches (restricted unpickler), the .npz cache, and corrupt inputs."""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from fldata.datasets import DataError, DataNotFoundError, _cifar, load_dataset

BIN_NAMES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
PY_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
RECORDS_PER_BATCH = 4


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLIPLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def synthetic_batches(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (
            rng.integers(0, 256, size=(RECORDS_PER_BATCH, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, size=RECORDS_PER_BATCH),
        )
        for _ in range(6)
    ]


def binary_batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The official record layout: label byte, then the R, G and B planes, each row-major."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels.astype(np.uint8)[:, None], planes], axis=1).tobytes()


def python_batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {
        "batch_label": "synthetic",
        "labels": labels.tolist(),
        "data": planes,
        "filenames": [f"img{i}.png" for i in range(len(labels))],
    }
    return pickle.dumps(batch, protocol=2)


def write_tar(path: Path, members: dict[str, bytes], mode: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def binary_members(batches, folder: str = "cifar-10-batches-bin") -> dict[str, bytes]:
    members = {
        f"{folder}/{name}": binary_batch(*batch)
        for name, batch in zip(BIN_NAMES, batches, strict=True)
    }
    members[f"{folder}/batches.meta.txt"] = b"airplane\nautomobile\n"
    return members


def assert_matches(dataset, batches) -> None:
    assert (
        dataset.x_train.shape == (5 * RECORDS_PER_BATCH, 32, 32, 3)
        and dataset.x_train.dtype == np.uint8
    )
    assert dataset.y_train.dtype == np.int64 and dataset.image_shape == (3, 32, 32)
    assert np.array_equal(dataset.x_train, np.concatenate([images for images, _ in batches[:5]]))
    assert np.array_equal(dataset.y_train, np.concatenate([labels for _, labels in batches[:5]]))
    assert np.array_equal(dataset.x_test, batches[5][0]) and np.array_equal(
        dataset.y_test, batches[5][1]
    )


def test_binary_record_layout_is_label_then_rgb_planes() -> None:
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 0, 1] = (200, 100, 50)  # row 0, column 1
    record = bytes([7]) + bytes(3072)
    record = bytearray(record)
    record[1 + 1], record[1 + 1024 + 1], record[1 + 2048 + 1] = 200, 100, 50
    images, labels = _cifar.parse_binary_batch(bytes(record), "batch")
    assert labels.tolist() == [7] and np.array_equal(images, image)


@pytest.mark.parametrize("suffix, mode", [("tar.gz", "w:gz"), ("tar.xz", "w:xz")])
def test_binary_archive_loads(tmp_path: Path, suffix: str, mode: str) -> None:
    batches = synthetic_batches()
    archive = write_tar(
        tmp_path / "root" / "cifar10" / f"cifar-10-binary.{suffix}", binary_members(batches), mode
    )
    dataset = load_dataset("cifar10", root=tmp_path / "root")
    assert_matches(dataset, batches)
    assert str(archive) in dataset.source


def test_extracted_binary_folder_and_python_folder_agree(tmp_path: Path) -> None:
    batches = synthetic_batches(1)
    binary = tmp_path / "bin" / "cifar-10-batches-bin"
    python = (
        tmp_path / "py" / "cifar-10-batches-py"
    )  # torchvision's layout: <root>/cifar-10-batches-py
    binary.mkdir(parents=True)
    python.mkdir(parents=True)
    for bin_name, py_name, batch in zip(BIN_NAMES, PY_NAMES, batches, strict=True):
        (binary / bin_name).write_bytes(binary_batch(*batch))
        (python / py_name).write_bytes(python_batch(*batch))
    (python / "batches.meta").write_bytes(pickle.dumps({"label_names": ["airplane"]}, protocol=2))
    from_binary = load_dataset("cifar10", root=tmp_path / "bin")
    from_python = load_dataset("cifar10", root=tmp_path / "py")
    assert_matches(from_binary, batches)
    assert_matches(from_python, batches)
    assert "binary batches" in from_binary.source and "python batches" in from_python.source
    assert not (tmp_path / "cache").exists()  # extracted folders are fast to read: no cache


def test_python_archive_with_bytes_keys(tmp_path: Path) -> None:
    batches = synthetic_batches(2)
    members = {}
    for name, (images, labels) in zip(PY_NAMES, batches, strict=True):
        planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
        members[f"cifar-10-batches-py/{name}"] = pickle.dumps(
            {b"data": planes, b"labels": labels.tolist()}
        )
    write_tar(tmp_path / "cifar-10-python.tar.gz", members, "w:gz")
    assert_matches(load_dataset("cifar10", root=tmp_path), batches)


def py2_uint8_array_opcodes(array: np.ndarray) -> bytes:
    """Pickle opcodes (no STOP) for a C-order uint8 array as Python 2 + numpy 1.x wrote them:
    numpy.core.multiarray names and the pixel bytes as a Python-2 str (read back as latin-1)."""

    def small_str(text: bytes) -> bytes:
        return b"U" + bytes([len(text)]) + text

    def int4(value: int) -> bytes:
        return b"J" + struct.pack("<i", value)

    dtype = (
        b"cnumpy\ndtype\n"
        + small_str(b"u1")
        + b"K\x00K\x01\x87R"
        + b"(K\x03"
        + small_str(b"|")
        + b"NNN"
        + int4(-1)
        + int4(-1)
        + b"K\x00tb"
    )
    shape = b"".join(int4(size) for size in array.shape) + b"\x86"
    data = array.tobytes()
    return (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
        + small_str(b"b")
        + b"\x87R"
        + b"(K\x01"
        + shape
        + dtype
        + b"\x89T"
        + struct.pack("<I", len(data))
        + data
        + b"tb"
    )


def test_python_batches_written_by_python2(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = synthetic_batches(6)
    for name, (images, labels) in zip(PY_NAMES, batches, strict=True):
        planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
        label_list = b"](" + b"".join(b"K" + bytes([int(label)]) for label in labels) + b"e"
        (folder / name).write_bytes(
            b"\x80\x02}(U\x04data"
            + py2_uint8_array_opcodes(planes)
            + b"U\x06labels"
            + label_list
            + b"u."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. no DeprecationWarning from importing numpy.core
        assert_matches(load_dataset("cifar10", root=tmp_path), batches)


def test_malicious_python_batch_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = synthetic_batches()
    for name, batch in zip(PY_NAMES, batches, strict=True):
        (folder / name).write_bytes(python_batch(*batch))
    marker = tmp_path / "pwned"
    evil = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    (folder / "data_batch_3").write_bytes(evil)
    with pytest.raises(DataError, match=r"data_batch_3: refusing to unpickle os\.system"):
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()


def test_archive_is_cached_and_cache_is_verified(
    tmp_path: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = synthetic_batches(3)
    archive = write_tar(
        tmp_path / "cifar10" / "cifar-10-binary.tar.gz", binary_members(batches), "w:gz"
    )
    assert_matches(load_dataset("cifar10", root=tmp_path), batches)
    entries = list(private_cache.glob("cifar10-*.npz"))
    assert len(entries) == 1 and not list(private_cache.glob("*.tmp"))

    reads = []
    real_read_archive = _cifar.read_archive
    monkeypatch.setattr(
        _cifar, "read_archive", lambda path: reads.append(path) or real_read_archive(path)
    )
    assert_matches(load_dataset("cifar10", root=tmp_path), batches)
    assert reads == []  # served from the cache

    data = bytearray(entries[0].read_bytes())  # damage the cached pixels: the zip CRC catches it
    data[len(data) // 3] ^= 0xFF
    entries[0].write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="ignoring unusable cache entry"):
        assert_matches(load_dataset("cifar10", root=tmp_path), batches)
    assert reads == [archive]

    new_batches = synthetic_batches(4)  # a changed archive (new size/mtime) gets a new entry
    write_tar(archive, binary_members(new_batches), "w:gz")
    os.utime(archive, ns=(archive.stat().st_atime_ns, archive.stat().st_mtime_ns + 10**9))
    assert_matches(load_dataset("cifar10", root=tmp_path), new_batches)
    assert len(reads) == 2 and len(list(private_cache.glob("cifar10-*.npz"))) == 2


def test_unwritable_cache_only_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("FLIPLAB_CACHE", str(blocker))
    batches = synthetic_batches(5)
    write_tar(tmp_path / "cifar10" / "cifar-10-binary.tar.gz", binary_members(batches), "w:gz")
    with pytest.warns(RuntimeWarning, match="could not write cache entry"):
        assert_matches(load_dataset("cifar10", root=tmp_path), batches)


@pytest.mark.parametrize(
    "damage, expected",
    [
        ("truncate_tar", "corrupt or truncated archive"),
        ("flip_xz", "corrupt or truncated archive"),
        ("missing_member", r"not a CIFAR-10 archive: missing binary members \['test_batch.bin'\]"),
        ("bad_length", r"data_batch_2.bin: wrong length 12291 bytes.*3073-byte records"),
        ("bad_label", r"test_batch.bin: label value 12 at index 0 is out of range 0\.\.9"),
    ],
)
def test_corrupt_archives_are_rejected(tmp_path: Path, damage: str, expected: str) -> None:
    batches = synthetic_batches()
    members = binary_members(batches)
    if damage == "missing_member":
        del members["cifar-10-batches-bin/test_batch.bin"]
    if damage == "bad_length":
        members["cifar-10-batches-bin/data_batch_2.bin"] = members[
            "cifar-10-batches-bin/data_batch_2.bin"
        ][:-1]
    if damage == "bad_label":
        members["cifar-10-batches-bin/test_batch.bin"] = (
            b"\x0c" + members["cifar-10-batches-bin/test_batch.bin"][1:]
        )
    archive = write_tar(tmp_path / "cifar10" / "cifar-10-binary.tar.xz", members, "w:xz")
    data = bytearray(archive.read_bytes())
    if damage == "truncate_tar":
        del data[len(data) // 2 :]
    if damage == "flip_xz":
        data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match=expected) as caught:
        load_dataset("cifar10", root=tmp_path)
    assert str(archive) in str(caught.value)


def test_missing_cifar_lists_places_and_url(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-bin").mkdir()
    (tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin").write_bytes(b"")
    with pytest.raises(DataNotFoundError) as caught:
        load_dataset("cifar10", root=tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "cifar10" / "cifar-10-binary.tar.xz") in message
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "lacks ['data_batch_2.bin'" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message
