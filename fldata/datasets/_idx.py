"""The IDX format of (Fashion-)MNIST: parse and validate image/label files.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>`` (type ``0x08`` =
unsigned byte), ``ndim`` big-endian uint32 sizes, then the data, row-major.  Images
are ``0x00000803`` (N, rows, cols); labels are ``0x00000801`` (N,).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from ._core import DataError, check_counts, check_labels
from ._io import read_bytes

UNSIGNED_BYTE = 0x08
IMAGES_NDIM = 3
LABELS_NDIM = 1


def parse_idx(data: bytes, source: str | Path, expected_ndim: int) -> np.ndarray:
    """Decode IDX bytes into a ``uint8`` array of the declared shape (a view on ``data``).

    Raises:
        DataError: on a wrong magic number, a truncated file, or bytes beyond the declared size.
    """
    kind = "images" if expected_ndim == IMAGES_NDIM else "labels"
    expected_magic = (UNSIGNED_BYTE << 8) | expected_ndim
    if len(data) < 4:
        raise DataError(
            f"{source}: truncated IDX file: {len(data)} bytes, shorter than the 4-byte magic number"
        )
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataError(
            f"{source}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x} (IDX "
            f"unsigned-byte {expected_ndim}-D {kind}); is this the right file?"
        )
    header_size = 4 + 4 * expected_ndim
    if len(data) < header_size:
        raise DataError(
            f"{source}: truncated IDX header: {len(data)} bytes, expected {header_size}"
        )
    dims = struct.unpack(f">{expected_ndim}I", data[4:header_size])
    payload_size = math.prod(dims)
    actual_payload = len(data) - header_size
    if actual_payload < payload_size:
        raise DataError(
            f"{source}: truncated: the header declares shape {dims} = {payload_size} bytes of "
            f"{kind} but only {actual_payload} bytes follow"
        )
    if actual_payload > payload_size:
        raise DataError(
            f"{source}: wrong length: {actual_payload - payload_size} extra bytes after the "
            f"{payload_size} bytes of {kind} declared by the header (shape {dims})"
        )
    return np.frombuffer(data, dtype=np.uint8, count=payload_size, offset=header_size).reshape(dims)


def load_idx_split(
    images_path: Path, labels_path: Path, num_classes: int, image_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Read one split: ``uint8`` images ``(N, H, W)`` and ``int64`` labels ``(N,)``, validated.

    Raises:
        DataError: for any problem of :func:`parse_idx`, an image size other than ``image_hw``,
            a label count different from the image count, or a label outside ``[0, num_classes)``.
    """
    images = parse_idx(read_bytes(images_path), images_path, IMAGES_NDIM)
    if images.shape[1:] != image_hw:
        raise DataError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected "
            f"{image_hw[0]}x{image_hw[1]}"
        )
    labels = parse_idx(read_bytes(labels_path), labels_path, LABELS_NDIM).astype(np.int64)
    check_counts(len(images), len(labels), f"{labels_path} (images: {images_path})")
    check_labels(labels, num_classes, str(labels_path))
    return images.copy(), labels
