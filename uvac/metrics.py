"""Clustering metrics of the paper: unsupervised accuracy, NMI, Silhouette, DBI, CHI.

Pure functions: numpy arrays in, plain Python numbers out (JSON-able). Labels may be any
hashable values (strings or integers); cluster ids are integers.

- External metrics (need labels): `unsupervised_accuracy` (Hungarian matching of clusters to
  labels, scipy's `linear_sum_assignment`) and `nmi` (scikit-learn).
- Internal metrics (need a representation): `internal_metrics` returns Silhouette (-1..1, higher
  is better), Davies-Bouldin (0..inf, lower is better) and Calinski-Harabasz (higher is better).
  Which representation they are computed on matters (a model's own latent flatters it), so the
  caller names it; see `uvac.evaluation.scoring`.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import (
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_score,
)

logger = logging.getLogger(__name__)

# Silhouette is O(N^2) in time and memory; beyond this many samples it is estimated on a
# fixed random subset (seeded, so the number is reproducible).
SILHOUETTE_MAX_SAMPLES = 5000
SILHOUETTE_RANDOM_STATE = 0

ArrayLike = np.ndarray | Sequence[Any]


def _as_1d(values: ArrayLike, *, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _check_same_length(labels: np.ndarray, clusters: np.ndarray) -> None:
    if labels.shape[0] != clusters.shape[0]:
        raise ValueError(
            f"labels and clusters differ in length: {labels.shape[0]} != {clusters.shape[0]}"
        )


def contingency_matrix(
    labels: ArrayLike, clusters: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of (cluster, label) pairs.

    Returns `(counts, cluster_values, label_values)` where `counts[i, j]` is how many samples
    are in cluster `cluster_values[i]` and carry label `label_values[j]`.

    >>> counts, cluster_values, label_values = contingency_matrix(["a", "a", "b"], [1, 0, 0])
    >>> counts.tolist(), cluster_values.tolist(), label_values.tolist()
    ([[1, 1], [1, 0]], [0, 1], ['a', 'b'])
    """
    label_array = _as_1d(labels, name="labels")
    cluster_array = _as_1d(clusters, name="clusters")
    _check_same_length(label_array, cluster_array)
    label_values, label_index = np.unique(label_array, return_inverse=True)
    cluster_values, cluster_index = np.unique(cluster_array, return_inverse=True)
    counts = np.zeros((cluster_values.size, label_values.size), dtype=np.int64)
    np.add.at(counts, (cluster_index, label_index), 1)
    return counts, cluster_values, label_values


def _hungarian_pairs(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # linear_sum_assignment handles rectangular matrices: with more clusters than labels some
    # clusters stay unmatched (their samples count as errors), and vice versa.
    return linear_sum_assignment(counts, maximize=True)


def unsupervised_accuracy(labels: ArrayLike, clusters: ArrayLike) -> float:
    """Share of samples whose cluster maps to their label under the best one-to-one mapping.

    The mapping is the Hungarian assignment on the cluster x label contingency matrix. It works
    when the number of clusters differs from the number of classes: unmatched clusters (or
    labels) count as wrong. Returns a fraction in [0, 1] (the paper prints it as a percentage).

    >>> unsupervised_accuracy([0, 0, 1, 1], [5, 5, 3, 3])
    1.0
    >>> unsupervised_accuracy(["a", "a", "a", "b"], [0, 0, 1, 1])
    0.75
    """
    counts, _, _ = contingency_matrix(labels, clusters)
    if counts.size == 0:
        raise ValueError("unsupervised_accuracy needs at least one sample")
    rows, cols = _hungarian_pairs(counts)
    return float(counts[rows, cols].sum() / counts.sum())


def cluster_label_mapping(labels: ArrayLike, clusters: ArrayLike) -> dict[int, Hashable | None]:
    """The Hungarian mapping behind `unsupervised_accuracy`: cluster id -> label.

    Every cluster id that occurs is a key. A cluster left unmatched (more clusters than labels)
    maps to None, consistent with the accuracy, which counts its samples as wrong.

    >>> cluster_label_mapping(["a", "a", "b", "b", "b"], [7, 7, 2, 2, 9])
    {2: 'b', 7: 'a', 9: None}
    """
    counts, cluster_values, label_values = contingency_matrix(labels, clusters)
    mapping: dict[int, Hashable | None] = {int(c): None for c in cluster_values.tolist()}
    if counts.size == 0:
        return mapping
    rows, cols = _hungarian_pairs(counts)
    for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
        mapping[int(cluster_values[row])] = label_values[col].item()
    return mapping


def nmi(labels: ArrayLike, clusters: ArrayLike) -> float:
    """Normalised mutual information between labels and clusters (0..1, arithmetic mean).

    Invariant to renaming clusters.

    >>> nmi([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    label_array = _as_1d(labels, name="labels")
    cluster_array = _as_1d(clusters, name="clusters")
    _check_same_length(label_array, cluster_array)
    if label_array.size == 0:
        raise ValueError("nmi needs at least one sample")
    return float(normalized_mutual_info_score(label_array, cluster_array))


def cluster_sizes(clusters: ArrayLike, k: int) -> list[int]:
    """How many samples each of the `k` clusters holds (zeros included).

    >>> cluster_sizes([0, 2, 2], 4)
    [1, 0, 2, 0]
    """
    cluster_array = _as_1d(clusters, name="clusters").astype(np.int64, copy=False)
    if cluster_array.size and (cluster_array.min() < 0 or cluster_array.max() >= k):
        raise ValueError(f"cluster ids must lie in [0, {k}), got {cluster_array.min()}..")
    return [int(n) for n in np.bincount(cluster_array, minlength=k)]


def clusters_used(clusters: ArrayLike) -> int:
    """Number of distinct clusters that hold at least one sample.

    >>> clusters_used([3, 3, 1])
    2
    """
    return int(np.unique(_as_1d(clusters, name="clusters")).size)


def internal_metrics(
    representation: np.ndarray,
    clusters: ArrayLike,
    *,
    max_silhouette_samples: int = SILHOUETTE_MAX_SAMPLES,
    random_state: int = SILHOUETTE_RANDOM_STATE,
) -> dict[str, float | str | None]:
    """Silhouette, Davies-Bouldin and Calinski-Harabasz of `clusters` in `representation`.

    `representation` is (N, D), one row per sample. Returns `{"silhouette", "dbi", "chi",
    "note"}`. The three scores are undefined unless 2 <= clusters used <= N - 1; then they are
    None and `note` says why (this never raises for a degenerate clustering). Otherwise `note`
    is None, or says that Silhouette was estimated on a seeded subset of
    `max_silhouette_samples` samples.

    >>> points = np.array([[0.0], [0.1], [10.0], [10.1]])
    >>> scores = internal_metrics(points, [0, 0, 1, 1])
    >>> round(scores["silhouette"], 2), scores["dbi"] < 0.1
    (0.99, True)
    >>> internal_metrics(points, [0, 0, 0, 0])["note"]
    'undefined: 1 cluster(s) used for 4 samples (need 2 to 3)'
    """
    points = np.asarray(representation, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"representation must be (N, D), got shape {points.shape}")
    cluster_array = _as_1d(clusters, name="clusters")
    _check_same_length(points, cluster_array)
    n_samples = points.shape[0]
    n_used = clusters_used(cluster_array)
    if not 2 <= n_used <= n_samples - 1:
        reason = (
            f"undefined: {n_used} cluster(s) used for {n_samples} samples "
            f"(need 2 to {max(n_samples - 1, 0)})"
        )
        logger.info("internal metrics %s", reason)
        return {"silhouette": None, "dbi": None, "chi": None, "note": reason}
    if not np.isfinite(points).all():
        reason = "undefined: the representation has non-finite values"
        logger.warning("internal metrics %s", reason)
        return {"silhouette": None, "dbi": None, "chi": None, "note": reason}

    note: str | None = None
    sample_size: int | None = None
    if n_samples > max_silhouette_samples:
        sample_size = max_silhouette_samples
        note = (
            f"silhouette estimated on {sample_size} of {n_samples} samples "
            f"(random_state={random_state})"
        )
    silhouette = _silhouette(points, cluster_array, sample_size=sample_size, seed=random_state)
    return {
        "silhouette": silhouette,
        "dbi": float(davies_bouldin_score(points, cluster_array)),
        "chi": float(calinski_harabasz_score(points, cluster_array)),
        "note": note,
    }


def _silhouette(
    points: np.ndarray, clusters: np.ndarray, *, sample_size: int | None, seed: int
) -> float | None:
    try:
        return float(silhouette_score(points, clusters, sample_size=sample_size, random_state=seed))
    except ValueError:
        # A random subset can (rarely) hit a single cluster; the score is then undefined.
        logger.warning("silhouette undefined on the sampled subset", exc_info=True)
        return None
