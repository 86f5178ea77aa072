"""attribution.clustering on seeded synthetic features: groups found, noise left out, distances to the centre,
identities carried over by member overlap."""

from __future__ import annotations

import numpy as np
import pytest

from attribution.clustering import METHODS, carry_over, cluster_features, cosine_distances, unit_rows

DIM = 64


def blob(rng: np.random.Generator, n: int, *, spread: float = 0.05, centre: np.ndarray | None = None) -> np.ndarray:
    """`n` unit vectors around a random direction (or `centre`), at a cosine distance of about spread**2 * D / 2."""
    direction = unit_rows(rng.normal(size=(1, DIM)))[0] if centre is None else centre
    return unit_rows(direction + spread * rng.normal(size=(n, DIM)))


def scattered(rng: np.random.Generator, n: int) -> np.ndarray:
    """Directions spread over the whole sphere: far from each other and from any blob."""
    return unit_rows(rng.normal(size=(n, DIM)))


def pile(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two tight groups (12 and 8) and 6 scattered points, shuffled; and the truth (0, 1, or -1 for noise)."""
    rng = np.random.default_rng(seed)
    features = np.concatenate([blob(rng, 12), blob(rng, 8), scattered(rng, 6)])
    truth = np.array([0] * 12 + [1] * 8 + [-1] * 6)
    order = rng.permutation(len(truth))
    return features[order] * rng.uniform(0.5, 3.0, size=(len(truth), 1)), truth[order]  # any scale


def test_it_finds_two_tight_groups_and_leaves_the_scattered_points_out() -> None:
    features, truth = pile()

    clustering = cluster_features(features, min_cluster_size=5, distance_threshold=0.2)

    assert clustering.n_clusters == 2
    # Largest first; each found cluster is exactly one true group; the scattered points are noise.
    assert sorted(np.flatnonzero(clustering.labels == 0)) == sorted(np.flatnonzero(truth == 0))
    assert sorted(np.flatnonzero(clustering.labels == 1)) == sorted(np.flatnonzero(truth == 1))
    assert set(np.flatnonzero(clustering.labels == -1)) == set(np.flatnonzero(truth == -1))


@pytest.mark.parametrize("method", METHODS)
def test_both_methods_keep_each_group_whole_and_apart(method: str) -> None:
    features, truth = pile()

    clustering = cluster_features(features, min_cluster_size=5, distance_threshold=0.2, method=method)

    assert clustering.n_clusters == 2
    for group in (0, 1):
        (found,) = set(clustering.labels[truth == group])
        assert found >= 0 and group == found  # largest first
    # HDBSCAN may attach a scattered point to a group (one reason the engine's default is average linkage).
    assert method == "hdbscan" or (clustering.labels[truth == -1] == -1).all()


def test_distances_are_cosine_distances_to_the_mean_direction_and_members_come_nearest_first() -> None:
    features, _ = pile(1)
    clustering = cluster_features(features, min_cluster_size=5, distance_threshold=0.2)
    unit = unit_rows(features)
    for k in range(clustering.n_clusters):
        rows = clustering.members(k)
        centre = unit[rows].mean(axis=0)
        centre /= np.linalg.norm(centre)
        np.testing.assert_allclose(clustering.centres[k], centre, atol=1e-6)
        np.testing.assert_allclose(clustering.distances[rows], 1 - unit[rows] @ centre, atol=1e-9)
        assert list(clustering.distances[rows]) == sorted(clustering.distances[rows])
    assert np.isnan(clustering.distances[clustering.labels == -1]).all()
    assert clustering.centres.dtype == np.float32 and clustering.centres.shape == (2, DIM)


def test_an_outlier_inside_the_threshold_is_the_farthest_member() -> None:
    rng = np.random.default_rng(2)
    group = blob(rng, 10, spread=0.03)
    outlier = unit_rows(group.mean(axis=0, keepdims=True) + 0.12 * rng.normal(size=(1, DIM)))
    clustering = cluster_features(np.concatenate([group, outlier]), min_cluster_size=5, distance_threshold=0.5)

    assert clustering.n_clusters == 1 and clustering.labels[10] == 0
    assert clustering.members(0)[-1] == 10  # farthest from the centre


def test_groups_under_the_minimum_size_are_noise() -> None:
    rng = np.random.default_rng(3)
    features = np.concatenate([blob(rng, 6), blob(rng, 4)])

    assert cluster_features(features, min_cluster_size=5, distance_threshold=0.2).n_clusters == 1
    assert cluster_features(features, min_cluster_size=4, distance_threshold=0.2).n_clusters == 2
    assert (cluster_features(features, min_cluster_size=7, distance_threshold=0.2).labels == -1).all()


def test_a_tighter_threshold_splits_what_a_looser_one_joins() -> None:
    rng = np.random.default_rng(4)
    centre = unit_rows(rng.normal(size=(1, DIM)))[0]
    near = unit_rows((centre + 0.5 * unit_rows(rng.normal(size=(1, DIM)))[0])[None, :])[0]  # ~0.11 apart
    features = np.concatenate([blob(rng, 8, spread=0.005, centre=centre), blob(rng, 8, spread=0.005, centre=near)])

    assert cluster_features(features, min_cluster_size=5, distance_threshold=0.2).n_clusters == 1
    assert cluster_features(features, min_cluster_size=5, distance_threshold=0.02).n_clusters == 2


def test_small_and_empty_inputs_are_all_noise() -> None:
    assert cluster_features(np.zeros((0, DIM)), min_cluster_size=5).labels.shape == (0,)
    few = cluster_features(scattered(np.random.default_rng(5), 3), min_cluster_size=5)
    assert few.n_clusters == 0 and (few.labels == -1).all() and few.centres.shape == (0, DIM)


def test_it_is_deterministic() -> None:
    features, _ = pile(6)
    first = cluster_features(features, min_cluster_size=5, distance_threshold=0.2)
    again = cluster_features(features.copy(), min_cluster_size=5, distance_threshold=0.2)
    np.testing.assert_array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.distances, again.distances)


def test_it_refuses_bad_parameters() -> None:
    features, _ = pile()
    with pytest.raises(ValueError, match="method"):
        cluster_features(features, method="kmeans")
    with pytest.raises(ValueError, match="min_cluster_size"):
        cluster_features(features, min_cluster_size=1)
    with pytest.raises(ValueError, match="distance_threshold"):
        cluster_features(features, distance_threshold=0.0)


def test_cosine_distances_match_a_simple_loop() -> None:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(7, 5))
    expected = np.array([[1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for b in features] for a in features])
    np.testing.assert_allclose(cosine_distances(features), np.clip(expected, 0, 2), atol=1e-12)


# --- identities carried over ---------------------------------------------------------------------------


def test_a_cluster_that_grew_keeps_its_identity() -> None:
    assert carry_over({7: {1, 2, 3, 4}}, [[1, 2, 3, 4, 5, 6, 7, 8, 9]]) == [7]


def test_a_split_cluster_lives_on_in_its_larger_part_and_the_rest_is_new() -> None:
    assert carry_over({7: {1, 2, 3, 4, 5}}, [[4, 5], [1, 2, 3]]) == [None, 7]


def test_a_group_sharing_half_or_less_is_new() -> None:
    assert carry_over({7: {1, 2, 3, 4}}, [[1, 2, 10, 11, 12]]) == [None]


def test_two_clusters_merged_give_their_identity_to_the_one_with_more_shared_members() -> None:
    assert carry_over({3: {1, 2, 3}, 4: {10, 11, 12, 13}}, [[1, 2, 3, 10, 11, 12, 13]]) == [4]
    # A tie: the earlier key in `previous` wins.
    assert carry_over({3: {1, 2, 3}, 4: {10, 11, 12}}, [[1, 2, 3, 10, 11, 12]]) == [3]


def test_each_identity_goes_to_one_group_and_each_group_takes_one() -> None:
    continues = carry_over({1: {1, 2, 3}, 2: {4, 5, 6}, 3: {7, 8}}, [[4, 5, 6], [1, 2, 3], [20, 21]])
    assert continues == [2, 1, None]


def test_empty_previous_clusters_give_nothing() -> None:
    assert carry_over({1: set()}, [[1, 2]]) == [None]
    assert carry_over({}, []) == []
