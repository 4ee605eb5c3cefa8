"""The private exact HDBSCAN used by FLAME: hand-computed stabilities and clear cluster
structure.
"""

from __future__ import annotations

import numpy as np
import pytest

from deepfl.defenses._hdbscan import (
    NOISE,
    cluster_stability,
    condense_tree,
    hdbscan_labels,
    minimum_spanning_tree,
    mutual_reachability,
    single_linkage,
)


def _distances(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=float).reshape(len(points), -1)
    return np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)


def test_minimum_spanning_tree_weight() -> None:
    points = np.array([0.0, 1.0, 3.0, 7.0, 7.5])
    edges = minimum_spanning_tree(_distances(points))
    assert len(edges) == 4
    assert sorted(w for _, _, w in edges) == pytest.approx([0.5, 1.0, 2.0, 4.0])


def test_min_samples_one_keeps_raw_distances_and_two_uses_core_distance() -> None:
    distances = _distances(np.array([0.0, 1.0, 3.0]))
    np.testing.assert_array_equal(mutual_reachability(distances, 1), distances)
    # core distances with min_samples=2 (self counts): 1, 1, 2
    expected = np.array([[1.0, 1.0, 3.0], [1.0, 1.0, 2.0], [3.0, 2.0, 2.0]])
    np.testing.assert_array_equal(mutual_reachability(distances, 2), expected)


def test_two_groups_stability_by_hand() -> None:
    # 0,1,2 and 10,11,12 with min_cluster_size 3: the root splits at d = 8 (lambda 1/8) into two
    # clusters,
    # each of which sheds its 3 points at d = 1 (lambda 1): stability 3 * (1 - 1/8) = 2.625 each;
    # root 6/8.
    distances = _distances(np.array([0.0, 1.0, 2.0, 10.0, 11.0, 12.0]))
    rows = condense_tree(single_linkage(6, minimum_spanning_tree(distances)), 3)
    stability = cluster_stability(rows, root_cluster=6)
    assert stability == pytest.approx({6: 0.75, 7: 2.625, 8: 2.625})
    labels = hdbscan_labels(distances, 3, allow_single_cluster=True)
    assert labels[0] == labels[1] == labels[2] != labels[3] == labels[4] == labels[5]
    assert set(labels.tolist()) == {0, 1}


def test_blobs_are_recovered() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    points = np.concatenate([centre + rng.normal(size=(6, 2)) for centre in centres])
    labels = hdbscan_labels(_distances(points), min_cluster_size=4)
    assert NOISE not in labels
    assert [len(set(labels[i : i + 6].tolist())) for i in (0, 6, 12)] == [1, 1, 1]
    assert len(set(labels.tolist())) == 3


def test_single_cluster_with_scattered_noise_as_in_flame() -> None:
    # 6 tight points and 4 scattered ones; min_cluster_size = n // 2 + 1 = 6 allows no split, so
    # only the
    # root can be selected; with allow_single_cluster the points that fall out last (the tight
    # group) are kept.
    points = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 10.0, 20.0, 30.0, 40.0])
    labels = hdbscan_labels(_distances(points), min_cluster_size=6, allow_single_cluster=True)
    assert labels.tolist() == [0] * 6 + [NOISE] * 4
    no_single = hdbscan_labels(_distances(points), min_cluster_size=6, allow_single_cluster=False)
    assert (no_single == NOISE).all()


def test_identical_points_do_not_break_stability() -> None:
    points = np.array([[0.0, 0.0]] * 5 + [[9.0, 9.0], [-9.0, 4.0]])
    labels = hdbscan_labels(_distances(points), min_cluster_size=4, allow_single_cluster=True)
    assert labels.tolist() == [0] * 5 + [NOISE] * 2


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="square"):
        hdbscan_labels(np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="min_cluster_size must be >= 2"):
        hdbscan_labels(np.zeros((3, 3)), 1)


@pytest.mark.slow
def test_agrees_with_scikit_learn() -> None:
    """Cross-check against sklearn.cluster.HDBSCAN (scikit-learn is in the test extra; with
    scikit-learn 1.9.1, 4 710 random cases of a longer version of this check all agreed)."""
    import sklearn.cluster as sklearn_cluster

    rng = np.random.default_rng(1)
    for trial in range(60):
        num_points = int(rng.integers(4, 40))
        centres = rng.normal(scale=8.0, size=(3, 2))
        points = centres[rng.integers(0, 3, num_points)] + rng.normal(size=(num_points, 2))
        distances = _distances(points)
        for min_cluster_size in (2, 3, num_points // 2 + 1):
            for single in (False, True):
                expected = (
                    sklearn_cluster.HDBSCAN(
                        min_cluster_size=min_cluster_size,
                        min_samples=1,
                        metric="precomputed",
                        allow_single_cluster=single,
                        copy=True,
                    )
                    .fit(distances)
                    .labels_
                )
                ours = hdbscan_labels(distances, min_cluster_size, allow_single_cluster=single)
                np.testing.assert_array_equal(ours == NOISE, expected == -1)
                pairs = set(
                    zip(ours[ours >= 0].tolist(), expected[expected >= 0].tolist(), strict=True)
                )
                assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}), (
                    trial,
                    pairs,
                )
