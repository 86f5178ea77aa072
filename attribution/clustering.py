"""The unknown pile, grouped: images rejected as unknown whose features lie close together may come from one
generator nobody has registered yet.

Features are compared by cosine distance (1 - cosine similarity) on L2-normalised vectors. The method is
average-linkage agglomerative clustering cut at a distance threshold (`method="average"`, the default);
scikit-learn's HDBSCAN (`method="hdbscan"`) is kept for comparison. Measured on the synthetic benchmark's
features (`python -m bench.unknown_clustering`), the average linkage grouped the unknown generators at least as
well as HDBSCAN at every setting tried, its threshold says what a cluster is in the features' own unit, and
HDBSCAN's own distance threshold (`cluster_selection_epsilon`) fails in scikit-learn 1.9 with numpy 2.4. Groups
smaller than `min_cluster_size` are noise: left out, never forced into a cluster. `carry_over` keeps a
cluster's identity across re-clusterings by member overlap.

Pure numpy and scikit-learn: nothing here knows about Django or Celery.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

METHODS = ("average", "hdbscan")
DEFAULT_METHOD = "average"
DEFAULT_MIN_CLUSTER_SIZE = 5
DEFAULT_DISTANCE_THRESHOLD = 0.1

Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class Clustering:
    """A grouping of N items. `labels [N]`: the item's cluster, 0..K-1 with the largest cluster first, or -1
    for noise; `distances [N]`: the cosine distance of the item to its cluster's centre (NaN for noise);
    `centres [K, D]`: each cluster's mean direction, L2-normalised (float32)."""

    labels: np.ndarray
    distances: np.ndarray
    centres: np.ndarray

    @property
    def n_clusters(self) -> int:
        return len(self.centres)

    def members(self, cluster: int) -> np.ndarray:
        """Indices of the items in `cluster`, nearest to its centre first."""
        rows = np.flatnonzero(self.labels == cluster)
        return rows[np.argsort(self.distances[rows], kind="stable")]


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows of `features [N, D]` scaled to unit L2 norm (float64; a zero row stays zero)."""
    features = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return np.asarray(features / np.maximum(norms, np.finfo(np.float64).tiny))


def cosine_distances(features: np.ndarray) -> np.ndarray:
    """`[N, N]` cosine distances (0 to 2, symmetric, zero diagonal) between the rows of `features [N, D]`."""
    unit = unit_rows(features)
    distances = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    np.fill_diagonal(distances, 0.0)
    return np.asarray((distances + distances.T) / 2.0)


def cluster_features(
    features: np.ndarray,
    *,
    min_cluster_size: int = DEFAULT_MIN_CLUSTER_SIZE,
    distance_threshold: float = DEFAULT_DISTANCE_THRESHOLD,
    method: str = DEFAULT_METHOD,
) -> Clustering:
    """Group the rows of `features [N, D]` (L2-normalised here) by cosine distance.

    `average`: agglomerative clustering with average linkage, merging two groups while the mean cosine
    distance between their members is under `distance_threshold`. `hdbscan`: scikit-learn's HDBSCAN on the
    same distances (`min_samples` = `min_cluster_size`; it finds its own scale, `distance_threshold` is not
    used). Either way a group of fewer than `min_cluster_size` items is noise (-1). Deterministic: the same
    features in the same order give the same clustering. `[N, N]` distances are held in memory: the caller
    bounds N.
    """
    if method not in METHODS:
        raise ValueError(f"unknown clustering method {method!r}; expected one of {METHODS}")
    if min_cluster_size < 2:
        raise ValueError(f"min_cluster_size must be at least 2, got {min_cluster_size}")
    if not 0.0 < distance_threshold <= 2.0:
        raise ValueError(f"distance_threshold is a cosine distance in (0, 2], got {distance_threshold}")
    unit = unit_rows(features)
    if unit.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {unit.shape}")
    n = len(unit)
    raw = np.full(n, -1, dtype=np.int64)
    if n >= min_cluster_size:
        distances = cosine_distances(unit)
        if method == "average":
            from sklearn.cluster import AgglomerativeClustering

            raw = AgglomerativeClustering(
                n_clusters=None, metric="precomputed", linkage="average", distance_threshold=distance_threshold
            ).fit_predict(distances)
        else:
            from sklearn.cluster import HDBSCAN

            raw = HDBSCAN(
                min_cluster_size=min_cluster_size,
                min_samples=min_cluster_size,
                metric="precomputed",
                allow_single_cluster=True,
                copy=True,
            ).fit_predict(distances)
    return _finish(unit, np.asarray(raw, dtype=np.int64), min_cluster_size)


def _finish(unit: np.ndarray, raw: np.ndarray, min_cluster_size: int) -> Clustering:
    """Small groups to noise, clusters numbered largest first (ties: by their first item), centres and
    distances."""
    groups = [np.flatnonzero(raw == label) for label in np.unique(raw[raw >= 0])]
    groups = sorted((g for g in groups if len(g) >= min_cluster_size), key=lambda g: (-len(g), int(g[0])))
    labels = np.full(len(unit), -1, dtype=np.int64)
    distances = np.full(len(unit), np.nan, dtype=np.float64)
    centres = np.zeros((len(groups), unit.shape[1] if unit.ndim == 2 else 0), dtype=np.float32)
    for index, rows in enumerate(groups):
        centre = unit_rows(unit[rows].mean(axis=0, keepdims=True))[0]
        labels[rows] = index
        distances[rows] = np.clip(1.0 - unit[rows] @ centre, 0.0, 2.0)
        centres[index] = centre
    return Clustering(labels=labels, distances=distances, centres=centres)


def carry_over(
    previous: Mapping[Key, Collection[Hashable]],
    current: Sequence[Collection[Hashable]],
    *,
    min_share: float = 0.5,
) -> list[Key | None]:
    """Which earlier cluster each of the `current` groups continues, or None for a new one.

    `previous` maps an earlier cluster's key to its members (the caller keeps only members that were
    clustered again this time: an item that left the pile cannot vote); `current` lists the new groups'
    members. A new group continues the earlier cluster it shares more than `min_share` of that cluster's
    members with; each earlier cluster is continued at most once and each new group continues at most one,
    the largest overlaps matched first (ties: the earlier key's order in `previous`, then the new group's
    order). A cluster that grew keeps its identity; one that split lives on in its larger part.
    """
    order = {key: rank for rank, key in enumerate(previous)}
    current_sets = [set(group) for group in current]
    pairs: list[tuple[int, int, int, Key]] = []
    for key, members in previous.items():
        before = set(members)
        if not before:
            continue
        for index, group in enumerate(current_sets):
            shared = len(before & group)
            if shared > min_share * len(before):
                pairs.append((-shared, order[key], index, key))
    pairs.sort(key=lambda pair: pair[:3])
    continues: list[Key | None] = [None] * len(current)
    taken: set[Key] = set()
    for _, _, index, key in pairs:
        if continues[index] is None and key not in taken:
            continues[index] = key
            taken.add(key)
    return continues
