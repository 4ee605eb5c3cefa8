r"""A small exact HDBSCAN on a precomputed distance matrix, for FLAME's clustering of ~10-100
updates.

Campello, Moulavi and Sander, "Density-Based Clustering Based on Hierarchical Density Estimates",
PAKDD 2013; the steps and tie conventions follow the reference ``hdbscan`` package (McInnes et al.
2017), which FLAME uses:

1. core distance of a point = distance to its ``min_samples``-th nearest point, counting the
   point itself (so ``min_samples = 1`` gives core distance 0); mutual reachability
   :math:`d_{mr}(a, b) = \max(\mathrm{core}(a), \mathrm{core}(b), d(a, b))`;
2. minimum spanning tree of :math:`d_{mr}` (Prim, :math:`O(n^2)` on the dense matrix);
3. single-linkage hierarchy from the MST edges in increasing weight;
4. condensed tree with ``min_cluster_size``: at each split, a child smaller than
   ``min_cluster_size`` sheds its points (they "fall out" at :math:`\lambda = 1/d`);
   two large children become new clusters; one large child continues its parent;
5. stability :math:`S(C) = \sum_{p \in C} (\lambda_p - \lambda_{birth}(C))` (children counted
   with their size) and excess-of-mass selection; the root is a candidate only with
   ``allow_single_cluster``;
6. labels: a point belongs to the selected cluster above it; if the only selected cluster is the
   root, a point is kept only if it fell out at the root's largest :math:`\lambda`
   (the reference implementation's rule).  Noise is ``-1``.

numpy only (the matrices are tiny); not a public API.
"""

from __future__ import annotations

import numpy as np

NOISE = -1
_MIN_DISTANCE = 1e-200  # zero distances (identical points) get a large but finite lambda


def mutual_reachability(distances: np.ndarray, min_samples: int) -> np.ndarray:
    """Mutual reachability distances for the given ``min_samples`` (``1`` returns the distances
    unchanged).
    """
    num_points = distances.shape[0]
    k = min(max(min_samples, 1), num_points)
    core = np.sort(distances, axis=1)[:, k - 1]
    return np.maximum(distances, np.maximum(core[:, None], core[None, :]))


def minimum_spanning_tree(distances: np.ndarray) -> list[tuple[int, int, float]]:
    """Prim's algorithm on a dense symmetric matrix; returns the ``n - 1`` edges ``(a, b,
    weight)``.
    """
    num_points = distances.shape[0]
    in_tree = np.zeros(num_points, dtype=bool)
    best = np.full(num_points, np.inf)
    parent = np.zeros(num_points, dtype=int)
    current = 0
    edges: list[tuple[int, int, float]] = []
    for _ in range(num_points - 1):
        in_tree[current] = True
        closer = ~in_tree & (distances[current] < best)
        best[closer] = distances[current][closer]
        parent[closer] = current
        candidates = np.where(in_tree, np.inf, best)
        current = int(np.argmin(candidates))
        edges.append((int(parent[current]), current, float(best[current])))
    return edges


def single_linkage(num_points: int, edges: list[tuple[int, int, float]]) -> np.ndarray:
    """Merge MST edges in increasing weight; row ``i`` = ``(left, right, distance, size)`` creates
    node ``n + i``.
    """
    owner = list(range(2 * num_points - 1))
    size = [1] * num_points + [0] * (num_points - 1)

    def find(node: int) -> int:
        while owner[node] != node:
            owner[node] = owner[owner[node]]
            node = owner[node]
        return node

    hierarchy = np.zeros((num_points - 1, 4))
    for row, (a, b, weight) in enumerate(sorted(edges, key=lambda edge: edge[2])):
        left, right = find(a), find(b)
        new_node = num_points + row
        owner[left] = owner[right] = new_node
        size[new_node] = size[left] + size[right]
        hierarchy[row] = (left, right, weight, size[new_node])
    return hierarchy


def _leaves(hierarchy: np.ndarray, node: int, num_points: int) -> list[int]:
    stack, points = [node], []
    while stack:
        current = stack.pop()
        if current < num_points:
            points.append(current)
        else:
            left, right = hierarchy[current - num_points, :2].astype(int)
            stack.extend((left, right))
    return points


def condense_tree(
    hierarchy: np.ndarray, min_cluster_size: int
) -> list[tuple[int, int, float, int]]:
    """Condensed tree rows ``(parent_cluster, child, lambda, child_size)``; the root cluster is
    ``n``.

    A child is a point (``< n``, size 1) falling out of its parent, or a new cluster (``> n``).
    """
    num_points = hierarchy.shape[0] + 1
    root = 2 * num_points - 2
    cluster_of = {root: num_points}
    next_label = num_points + 1
    rows: list[tuple[int, int, float, int]] = []
    queue = [root]
    while queue:
        node = queue.pop(0)
        left, right, distance, _ = hierarchy[node - num_points]
        left, right = int(left), int(right)
        lam = 1.0 / max(distance, _MIN_DISTANCE)
        parent = cluster_of[node]
        sizes = {
            child: (1 if child < num_points else int(hierarchy[child - num_points, 3]))
            for child in (left, right)
        }
        large = [child for child in (left, right) if sizes[child] >= min_cluster_size]
        if len(large) == 2:
            for child in (left, right):
                cluster_of[child] = next_label
                rows.append((parent, next_label, lam, sizes[child]))
                next_label += 1
        elif len(large) == 1:
            cluster_of[large[0]] = parent
        for child in (left, right):
            if child in large:  # size >= min_cluster_size >= 2, so an internal node
                queue.append(child)
            else:
                rows.extend(
                    (parent, point, lam, 1) for point in _leaves(hierarchy, child, num_points)
                )
    return rows


def cluster_stability(
    rows: list[tuple[int, int, float, int]], root_cluster: int
) -> dict[int, float]:
    r"""Stability :math:`S(C) = \sum_{\text{rows with parent } C} (\lambda - \lambda_{birth}(C))
    \cdot \text{size}`.
    """
    birth = {root_cluster: 0.0}
    birth.update({child: lam for _, child, lam, size in rows if child > root_cluster})
    stability = {cluster: 0.0 for cluster in birth}
    for parent, _, lam, size in rows:
        stability[parent] += (lam - birth[parent]) * size
    return stability


def select_clusters_eom(
    rows: list[tuple[int, int, float, int]], root_cluster: int, allow_single_cluster: bool
) -> set[int]:
    """Excess-of-mass selection: keep a cluster unless its children's selected stability is
    larger.
    """
    stability = cluster_stability(rows, root_cluster)
    children: dict[int, list[int]] = {cluster: [] for cluster in stability}
    for parent, child, _, _ in rows:
        if child > root_cluster:
            children[parent].append(child)
    candidates = sorted(stability, reverse=True)  # children have larger labels than parents
    if not allow_single_cluster:
        candidates = [c for c in candidates if c != root_cluster]
    selected = {cluster: True for cluster in candidates}
    for cluster in candidates:
        subtree = sum(stability[child] for child in children[cluster])
        if subtree > stability[cluster]:
            selected[cluster] = False
            stability[cluster] = subtree
        else:
            stack = list(children[cluster])
            while stack:
                descendant = stack.pop()
                selected[descendant] = False
                stack.extend(children[descendant])
    return {cluster for cluster, keep in selected.items() if keep}


def hdbscan_labels(
    distances: np.ndarray,
    min_cluster_size: int,
    min_samples: int = 1,
    allow_single_cluster: bool = False,
) -> np.ndarray:
    """HDBSCAN labels (``0, 1, ...`` per cluster, ``-1`` noise) of points given their distance
    matrix ``(n, n)``.

    Raises:
        ValueError: for a non-square or non-finite matrix, or ``min_cluster_size < 2``.
    """
    distances = np.asarray(distances, dtype=np.float64)
    if distances.ndim != 2 or distances.shape[0] != distances.shape[1]:
        raise ValueError(f"hdbscan: need a square distance matrix; got shape {distances.shape}")
    if not np.isfinite(distances).all():
        raise ValueError("hdbscan: the distance matrix contains NaN or inf")
    if min_cluster_size < 2:
        raise ValueError(f"hdbscan: min_cluster_size must be >= 2; got {min_cluster_size}")
    num_points = distances.shape[0]
    if num_points < 2:
        return (
            np.zeros(num_points, dtype=int) if allow_single_cluster else np.full(num_points, NOISE)
        )
    distances = np.maximum(0.5 * (distances + distances.T), 0.0)
    np.fill_diagonal(distances, 0.0)
    hierarchy = single_linkage(
        num_points, minimum_spanning_tree(mutual_reachability(distances, min_samples))
    )
    rows = condense_tree(hierarchy, min_cluster_size)
    root_cluster = num_points
    selected = select_clusters_eom(rows, root_cluster, allow_single_cluster)

    parent_of = {child: parent for parent, child, _, _ in rows}
    fall_lambda = {child: lam for _, child, lam, _ in rows if child < num_points}
    label_of = {cluster: label for label, cluster in enumerate(sorted(selected))}
    root_max_lambda = max(
        (lam for parent, _, lam, _ in rows if parent == root_cluster), default=0.0
    )
    labels = np.full(num_points, NOISE)
    for point in range(num_points):
        cluster = parent_of[point]
        while cluster not in selected and cluster != root_cluster:
            cluster = parent_of[cluster]
        if cluster in selected and cluster != root_cluster:
            labels[point] = label_of[cluster]
        elif cluster in selected and fall_lambda[point] >= root_max_lambda:
            labels[point] = label_of[cluster]
    return labels
