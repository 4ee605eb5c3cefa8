"""Splitting a training set among federated clients (paper section 5 / App. A.2; ALGORITHMS.md).

Every partitioner returns disjoint, sorted int64 index arrays that together cover
``range(num_samples)`` exactly once, and is deterministic given ``seed``
(``np.random.default_rng(seed)``; no global RNG state).

* :func:`iid_partition`: uniform random split into near-equal parts.
* :func:`dirichlet_partition`: the non-IID split of the paper (alpha = 0.5 over 100 clients):
  for every class ``c``, client proportions ``q_c ~ Dir(alpha * 1_N)`` applied to class ``c``'s
  OWN size (the released code sizes every class by class 0's count, a bug inherited from DBA).
* :func:`two_client_split`: benign / malicious halves for the linear engine (THEORY.md section 10).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["iid_partition", "dirichlet_partition", "two_client_split", "label_distribution"]


def iid_partition(num_samples: int, num_clients: int, seed: int) -> list[np.ndarray]:
    """Shuffle ``range(num_samples)`` and cut it into ``num_clients`` parts of sizes differing by <=
    1.

    Raises:
        ValueError: if ``num_clients < 1`` or ``num_clients > num_samples`` (a client would be
            empty).
    """
    _check_count(num_samples, "num_samples", minimum=1)
    _check_count(num_clients, "num_clients", minimum=1)
    if num_clients > num_samples:
        raise ValueError(
            f"num_clients ({num_clients}) exceeds num_samples ({num_samples}): every client needs "
            "at least one sample; use fewer clients."
        )
    permutation = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(part).astype(np.int64) for part in np.array_split(permutation, num_clients)]


def dirichlet_partition(
    labels: np.ndarray,
    num_clients: int,
    alpha: float,
    seed: int,
    min_size: int = 0,
    max_tries: int = 100,
) -> list[np.ndarray]:
    """Non-IID split by class with Dirichlet proportions (paper section 5, App. A.13).

    For each class ``c`` with ``n_c`` samples (shuffled), draw ``q_c ~ Dir(alpha * 1_N)`` and give
    client ``i`` the slice between ``floor(n_c * sum_{j<i} q_cj)`` and ``floor(n_c * sum_{j<=i}
    q_cj)``, so client ``i`` receives ``~ n_c * q_ci`` samples of class ``c``. Small ``alpha``
    concentrates each class on few clients (skewed); large ``alpha`` approaches the IID split.

    If some client ends up with fewer than ``min_size`` samples the whole draw is repeated (from
    the same generator, so the result is still determined by ``seed``), up to ``max_tries`` draws.

    Args:
        labels: (n,) non-negative integer class labels of the training set.
        num_clients: N >= 1.
        alpha: Dirichlet concentration > 0 (the paper uses 0.5).
        seed: seed of ``np.random.default_rng``.
        min_size: minimum samples per client (0 = no constraint).
        max_tries: maximal number of draws when ``min_size`` is not met.

    Returns:
        N sorted int64 index arrays into ``labels``, disjoint, covering every index once.

    Raises:
        ValueError: bad arguments, ``min_size * num_clients > n``, or ``min_size`` not met after
        ``max_tries`` draws.
    """
    y = np.asarray(labels)
    _check_dirichlet_args(y, num_clients, alpha, min_size, max_tries)
    rng = np.random.default_rng(seed)
    class_indices = [np.flatnonzero(y == c) for c in np.unique(y)]
    smallest = 0
    for _ in range(max_tries):
        parts = _dirichlet_draw(class_indices, num_clients, float(alpha), rng)
        smallest = min(part.size for part in parts)
        if smallest >= min_size:
            return parts
    raise ValueError(
        f"dirichlet_partition: no draw in {max_tries} tries gave every client >= {min_size} "
        f"samples (last draw's smallest client: {smallest}) with alpha={alpha}, {num_clients} "
        f"clients, {y.size} samples; raise alpha or max_tries, or lower min_size."
    )


def _check_dirichlet_args(
    y: np.ndarray, num_clients: int, alpha: float, min_size: int, max_tries: int
) -> None:
    """Raise ``ValueError`` for arguments :func:`dirichlet_partition` cannot split with."""
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array; got shape {y.shape}.")
    if y.dtype.kind not in "iu" or y.min() < 0:
        raise ValueError(
            f"labels must be non-negative integers; got dtype {y.dtype}, min {y.min()}."
        )
    _check_count(num_clients, "num_clients", minimum=1)
    if not (
        isinstance(alpha, (int, float, np.floating, np.integer))
        and math.isfinite(alpha)
        and alpha > 0
    ):
        raise ValueError(f"alpha must be a finite number > 0 (the paper uses 0.5); got {alpha!r}.")
    _check_count(min_size, "min_size", minimum=0)
    _check_count(max_tries, "max_tries", minimum=1)
    if min_size * num_clients > y.size:
        raise ValueError(
            f"min_size={min_size} for {num_clients} clients needs {min_size * num_clients} samples "
            f"but there are only {y.size}; lower min_size or num_clients."
        )


def _dirichlet_draw(
    class_indices: list[np.ndarray], num_clients: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """One Dirichlet draw: per class, shuffle its indices and cut them by ``q_c ~ Dir(alpha)``."""
    num_samples = sum(indices.size for indices in class_indices)
    client_of_sample = np.empty(num_samples, dtype=np.int64)
    for indices in class_indices:
        shuffled = rng.permutation(indices)
        proportions = rng.dirichlet(np.full(num_clients, alpha))
        # Cut points from this class's OWN size n_c (not class 0's: the released code's DBA bug).
        cuts = np.floor(np.cumsum(proportions)[:-1] * shuffled.size)
        client_of_sample[shuffled] = np.searchsorted(cuts, np.arange(shuffled.size), side="right")
    by_client = np.argsort(client_of_sample, kind="stable").astype(
        np.int64
    )  # ascending index per client
    sizes = np.bincount(client_of_sample, minlength=num_clients)
    return np.split(by_client, np.cumsum(sizes)[:-1])


def two_client_split(
    num_samples: int, seed: int, fraction: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint seeded split of ``range(num_samples)`` into (benign, malicious) (THEORY.md section
    10).

    The benign client gets ``round(fraction * num_samples)`` random indices, the malicious one the
    rest; both sorted int64.

    Raises:
        ValueError: if ``fraction`` is not in (0, 1) or either side would be empty.
    """
    _check_count(num_samples, "num_samples", minimum=2)
    if not (isinstance(fraction, (int, float, np.floating)) and 0 < fraction < 1):
        raise ValueError(
            f"fraction (the benign client's share) must be in (0, 1); got {fraction!r}."
        )
    num_benign = int(round(fraction * num_samples))
    if not 0 < num_benign < num_samples:
        raise ValueError(
            f"fraction={fraction} of {num_samples} samples leaves a client empty; choose a "
            "fraction nearer 0.5."
        )
    permutation = np.random.default_rng(seed).permutation(num_samples)
    benign = np.sort(permutation[:num_benign]).astype(np.int64)
    malicious = np.sort(permutation[num_benign:]).astype(np.int64)
    return benign, malicious


def label_distribution(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> np.ndarray:
    """(num_clients, num_classes) matrix of per-client class counts, for inspecting a partition."""
    y = np.asarray(labels)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"labels must be in 0..{num_classes - 1}; got values in [{y.min()}, {y.max()}]."
        )
    return np.stack([np.bincount(y[part], minlength=num_classes)[:num_classes] for part in parts])


def _check_count(value: int, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
