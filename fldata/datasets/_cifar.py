"""CIFAR-10 in its two official layouts, from an extracted folder or a tar archive.

* binary (``cifar-10-batches-bin``): ``data_batch_{1..5}.bin``, ``test_batch.bin``;
  each record is 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B, row-major).
* python (``cifar-10-batches-py``): ``data_batch_{1..5}``, ``test_batch``; each a
  pickled dict with ``data`` (uint8 ``(N, 3072)``, same pixel order) and ``labels``.
  Read only through the restricted unpickler.

Archives (``.tar.gz``, ``.tar.xz``, ...) are streamed with :mod:`tarfile`: the
wanted members are read into memory, nothing is written to disk.
"""

from __future__ import annotations

import lzma
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from ._core import DataError, check_counts, check_labels
from ._pickle import restricted_loads

NUM_CLASSES = 10
CHANNELS, HEIGHT, WIDTH = 3, 32, 32
PIXELS_PER_IMAGE = CHANNELS * HEIGHT * WIDTH
RECORD_SIZE = 1 + PIXELS_PER_IMAGE
NUM_TRAIN_BATCHES = 5

BINARY_DIR = "cifar-10-batches-bin"
PYTHON_DIR = "cifar-10-batches-py"
BINARY_MEMBERS = tuple(f"data_batch_{i}.bin" for i in range(1, NUM_TRAIN_BATCHES + 1)) + (
    "test_batch.bin",
)
PYTHON_MEMBERS = tuple(f"data_batch_{i}" for i in range(1, NUM_TRAIN_BATCHES + 1)) + ("test_batch",)
LAYOUTS = {"binary": BINARY_MEMBERS, "python": PYTHON_MEMBERS}


def _channels_last(flat_pixels: np.ndarray) -> np.ndarray:
    """``(N, 3072)`` in R-plane, G-plane, B-plane order -> ``(N, 32, 32, 3)``."""
    return flat_pixels.reshape(-1, CHANNELS, HEIGHT, WIDTH).transpose(0, 2, 3, 1)


def parse_binary_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode a binary batch into ``uint8 (N, 32, 32, 3)`` images and ``int64`` labels.

    Raises:
        DataError: if the size is not a positive multiple of 3073 bytes or a label is not 0..9.
    """
    if len(data) == 0 or len(data) % RECORD_SIZE:
        raise DataError(
            f"{source}: wrong length {len(data)} bytes: a CIFAR-10 binary batch is a whole number "
            f"of {RECORD_SIZE}-byte records (1 label byte + {PIXELS_PER_IMAGE} pixel bytes)"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_SIZE)
    labels = records[:, 0].astype(np.int64)
    check_labels(labels, NUM_CLASSES, source)
    return _channels_last(records[:, 1:]), labels


def parse_python_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode a pickled python batch (restricted unpickler) into images and labels.

    Raises:
        DataError: if the pickle is unsafe or corrupt, or ``data``/``labels`` have the wrong form.
    """
    batch = restricted_loads(data, source)
    if not isinstance(batch, dict):
        raise DataError(f"{source}: expected a pickled dict, got {type(batch).__name__}")
    entries = {
        key.decode("latin1") if isinstance(key, bytes) else key: value
        for key, value in batch.items()
    }
    if "data" not in entries or "labels" not in entries:
        raise DataError(
            f"{source}: the batch dict needs keys 'data' and 'labels', has "
            f"{sorted(map(str, entries))}"
        )
    pixels = entries["data"]
    if (
        not isinstance(pixels, np.ndarray)
        or pixels.dtype != np.uint8
        or pixels.ndim != 2
        or pixels.shape[1] != PIXELS_PER_IMAGE
    ):
        raise DataError(f"{source}: 'data' must be a uint8 array (N, {PIXELS_PER_IMAGE})")
    try:
        labels = np.asarray(entries["labels"], dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as error:
        raise DataError(f"{source}: 'labels' is not a list of integers ({error})") from error
    if labels.ndim != 1:
        raise DataError(f"{source}: 'labels' must be 1-D, got shape {labels.shape}")
    check_counts(len(pixels), len(labels), source)
    check_labels(labels, NUM_CLASSES, source)
    return _channels_last(pixels), labels


def read_directory(folder: Path, layout: str) -> dict[str, bytes]:
    """Read the member files of ``layout`` from an extracted folder."""
    return {name: (folder / name).read_bytes() for name in LAYOUTS[layout]}


def read_archive(archive: Path) -> tuple[str, dict[str, bytes]]:
    """Stream a tar archive; return its layout and the bytes of that layout's members.

    Members are matched by base name, whatever folder they sit in.

    Raises:
        DataError: if the archive is corrupt/truncated or lacks the members of both layouts.
    """
    wanted = set(BINARY_MEMBERS) | set(PYTHON_MEMBERS)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                base = PurePosixPath(member.name).name
                if member.isfile() and base in wanted and base not in found:
                    stream = tar.extractfile(member)
                    if (
                        stream is None
                    ):  # isfile() members always have a stream; for the type checker
                        raise tarfile.ReadError(f"cannot read member {member.name}")
                    found[base] = stream.read()
    except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError, OSError) as error:
        raise DataError(
            f"{archive}: corrupt or truncated archive ({type(error).__name__}: {error}); delete it "
            "and fetch it again"
        ) from error
    for layout, members in LAYOUTS.items():
        if all(name in found for name in members):
            return layout, {name: found[name] for name in members}
    missing = {
        layout: [name for name in members if name not in found]
        for layout, members in LAYOUTS.items()
    }
    raise DataError(
        f"{archive}: not a CIFAR-10 archive: missing binary members {missing['binary']} and python "
        f"members {missing['python']}"
    )


def decode_members(layout: str, members: dict[str, bytes], source: str) -> dict[str, np.ndarray]:
    """Decode the six batches of ``layout`` into ``x_train, y_train, x_test, y_test``
    (contiguous).
    """
    parse = parse_binary_batch if layout == "binary" else parse_python_batch
    batches = [parse(members[name], f"{source}: {name}") for name in LAYOUTS[layout]]
    train, (x_test, y_test) = batches[:-1], batches[-1]
    return {
        "x_train": np.concatenate([images for images, _ in train]),
        "y_train": np.concatenate([labels for _, labels in train]),
        "x_test": np.ascontiguousarray(x_test),
        "y_test": y_test,
    }
