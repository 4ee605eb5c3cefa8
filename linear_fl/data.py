"""Data plumbing of the linear engine: client data, flat stamping, data fingerprints, random
streams.

Inputs are images in [0,1], flattened channel-first to ``d = C*H*W`` and
augmented with a bias 1 (:func:`linear_fl.model.augment`). Stamping is done
only by :func:`fldata.triggers.stamp` on the ``(N, C, H, W)`` view; the bias
coordinate is never stamped (THEORY.md section 1).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from fldata.datasets import flatten_unit
from fldata.triggers import Trigger

STREAM_ROLES = ("benign", "malicious", "inversion", "pretrain")
# Rows per chunk of the element-wise conversions below: each chunk's temporaries (about 6 MB for
# MNIST)
# stay in cache and no full-size intermediate is allocated. Element-wise, so the values do not
# depend on it.
CHUNK_ROWS = 1024


@dataclass(frozen=True)
class ClientData:
    """One client's local data: augmented inputs ``Xa`` (n, d+1) float64 and labels ``y`` (n,)
    int64.
    """

    Xa: np.ndarray
    y: np.ndarray

    @property
    def n(self) -> int:
        return int(self.y.shape[0])


def augmented_images(images: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows ``x~ = [x; 1]`` (n, d+1) float64 of uint8 images, ``x =
    fldata.datasets.flatten_unit(image)`` (pixels / 255, channel-first); ``rows`` selects images
    (all if None). Converted chunk by chunk."""
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    out = np.empty((len(rows), int(np.prod(images.shape[1:])) + 1), dtype=np.float64)
    for start in range(0, len(rows), CHUNK_ROWS):
        out[start : start + CHUNK_ROWS, :-1] = flatten_unit(
            images[rows[start : start + CHUNK_ROWS]]
        )
    out[:, -1] = 1.0
    return out


def stamp_flat(Xa: np.ndarray, trigger: Trigger, image_shape: tuple[int, int, int]) -> np.ndarray:
    """``A_{m,p}`` on augmented rows: stamp the pixel part with ``fldata.triggers.stamp``, keep the
    bias 1 (chunk by chunk, see ``CHUNK_ROWS``)."""
    out = np.empty((Xa.shape[0], Xa.shape[1]), dtype=np.float64)
    for start in range(0, Xa.shape[0], CHUNK_ROWS):
        chunk = Xa[start : start + CHUNK_ROWS, :-1]
        stamped = trigger.stamp(chunk.reshape((chunk.shape[0], *image_shape)))
        out[start : start + CHUNK_ROWS, :-1] = np.asarray(stamped, dtype=np.float64).reshape(
            chunk.shape[0], -1
        )
    out[:, -1] = 1.0
    return out


def data_fingerprint(*arrays: np.ndarray) -> str:
    """sha256 over the raw bytes, shapes and dtypes of the arrays (data identity for cache keys)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}|{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def role_streams(seed: int, *salt: int) -> dict[str, np.random.Generator]:
    """A fresh, independent Generator per role spawned from ``(seed, *salt)`` (identical for
    identical inputs).

    The twin runs call this once per twin, so both twins consume identical
    random streams: the defense's inversion subsampling draws from its own
    ``"inversion"`` stream and never shifts the benign or malicious streams.
    The one-round probe salts with the round index.
    """
    children = np.random.SeedSequence([seed, *salt] if salt else seed).spawn(len(STREAM_ROLES))
    return {
        role: np.random.default_rng(child)
        for role, child in zip(STREAM_ROLES, children, strict=True)
    }
