"""Metrics against hand-computed cases."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

import uvac.metrics
from uvac.metrics import (
    cluster_label_mapping,
    cluster_sizes,
    clusters_used,
    contingency_matrix,
    internal_metrics,
    nmi,
    unsupervised_accuracy,
)


def test_perfect_clustering_with_permuted_ids_scores_one() -> None:
    labels = ["dog", "dog", "rain", "rain", "siren", "siren"]
    clusters = [4, 4, 0, 0, 7, 7]

    assert unsupervised_accuracy(labels, clusters) == 1.0
    assert nmi(labels, clusters) == pytest.approx(1.0)
    assert cluster_label_mapping(labels, clusters) == {4: "dog", 0: "rain", 7: "siren"}


def test_two_by_two_contingency_accuracy_by_hand() -> None:
    # cluster 0 holds 3 x a and 1 x b, cluster 1 holds 2 x a and 4 x b.
    # Mapping 0->a, 1->b is right for 3 + 4 = 7 of 10; the swap only for 1 + 2 = 3.
    labels = ["a", "a", "a", "b", "a", "a", "b", "b", "b", "b"]
    clusters = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]

    counts, cluster_values, label_values = contingency_matrix(labels, clusters)
    assert counts.tolist() == [[3, 1], [2, 4]]
    assert cluster_values.tolist() == [0, 1]
    assert label_values.tolist() == ["a", "b"]
    assert unsupervised_accuracy(labels, clusters) == pytest.approx(0.7)
    assert cluster_label_mapping(labels, clusters) == {0: "a", 1: "b"}


def test_hungarian_beats_majority_vote_when_two_clusters_prefer_one_label() -> None:
    # Both clusters are mostly "a", but a one-to-one mapping may give "a" to only one of them:
    # best is 0->a (4 right) and 1->b (2 right) = 6 of 10, not the 8 of a majority vote.
    labels = ["a"] * 4 + ["b"] + ["a"] * 3 + ["b"] * 2
    clusters = [0] * 5 + [1] * 5

    assert unsupervised_accuracy(labels, clusters) == pytest.approx(0.6)


def test_more_clusters_than_labels_counts_unmatched_clusters_as_wrong() -> None:
    labels = [0, 0, 0, 1, 1, 1]
    clusters = [0, 0, 2, 1, 1, 1]  # cluster 2 is a third cluster for one "0" sample

    assert unsupervised_accuracy(labels, clusters) == pytest.approx(5 / 6)
    assert cluster_label_mapping(labels, clusters) == {0: 0, 1: 1, 2: None}


def test_fewer_clusters_than_labels() -> None:
    labels = [0, 0, 1, 1, 2, 2]
    clusters = [0, 0, 0, 0, 1, 1]

    assert unsupervised_accuracy(labels, clusters) == pytest.approx(4 / 6)


def test_nmi_of_independent_partitions_is_zero() -> None:
    assert nmi([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)


def test_nmi_matches_entropy_formula_by_hand() -> None:
    labels = [0, 0, 0, 1]
    clusters = [0, 0, 1, 1]
    # p(label) = (3/4, 1/4); p(cluster) = (1/2, 1/2);
    # joint: (l0, c0) = 1/2, (l0, c1) = 1/4, (l1, c1) = 1/4.
    h_labels = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    h_clusters = math.log(2)
    mutual_information = (
        0.5 * math.log(0.5 / (0.75 * 0.5))
        + 0.25 * math.log(0.25 / (0.75 * 0.5))
        + 0.25 * math.log(0.25 / (0.25 * 0.5))
    )
    expected = mutual_information / ((h_labels + h_clusters) / 2)

    assert nmi(labels, clusters) == pytest.approx(expected)


def test_cluster_sizes_and_clusters_used() -> None:
    clusters = np.array([0, 3, 3, 3, 1])

    assert cluster_sizes(clusters, 5) == [1, 1, 0, 3, 0]
    assert clusters_used(clusters) == 3
    with pytest.raises(ValueError):
        cluster_sizes(clusters, 3)


def _blob(rng: np.random.Generator, centre: float, n: int) -> np.ndarray:
    return rng.normal(loc=centre, scale=0.1, size=(n, 3))


def test_internal_metrics_separate_blobs_score_well_and_one_blob_scores_poorly() -> None:
    rng = np.random.default_rng(0)
    separated = np.concatenate([_blob(rng, 0.0, 50), _blob(rng, 5.0, 50)])
    separated_clusters = np.repeat([0, 1], 50)
    one_blob = _blob(rng, 0.0, 100)
    arbitrary_clusters = rng.permutation(np.repeat([0, 1], 50))

    good = internal_metrics(separated, separated_clusters)
    poor = internal_metrics(one_blob, arbitrary_clusters)

    assert good["note"] is None and poor["note"] is None
    assert isinstance(good["silhouette"], float) and isinstance(poor["silhouette"], float)
    assert isinstance(good["dbi"], float) and isinstance(poor["dbi"], float)
    assert isinstance(good["chi"], float) and isinstance(poor["chi"], float)
    assert good["silhouette"] > 0.9
    assert abs(poor["silhouette"]) < 0.1
    assert good["dbi"] < 0.2 < 2.0 < poor["dbi"]
    assert good["chi"] > 1000 * poor["chi"]


@pytest.mark.parametrize(
    ("clusters", "used"),
    [([0, 0, 0, 0], 1), ([0, 1, 2, 3], 4)],
    ids=["one-cluster", "one-sample-per-cluster"],
)
def test_internal_metrics_degenerate_clusterings_return_none_and_say_why(
    clusters: list[int], used: int
) -> None:
    points = np.arange(8, dtype=np.float64).reshape(4, 2)

    scores = internal_metrics(points, clusters)

    assert scores["silhouette"] is None and scores["dbi"] is None and scores["chi"] is None
    assert isinstance(scores["note"], str)
    assert f"{used} cluster(s) used for 4 samples" in scores["note"]


def test_internal_metrics_non_finite_representation_returns_none() -> None:
    points = np.array([[0.0], [np.nan], [1.0], [1.1]])

    scores = internal_metrics(points, [0, 0, 1, 1])

    assert scores["silhouette"] is None
    assert "non-finite" in str(scores["note"])


def test_silhouette_subsampling_is_seeded_and_reported() -> None:
    rng = np.random.default_rng(1)
    points = np.concatenate([_blob(rng, 0.0, 60), _blob(rng, 1.0, 60)])
    clusters = np.repeat([0, 1], 60)

    first = internal_metrics(points, clusters, max_silhouette_samples=40)
    second = internal_metrics(points, clusters, max_silhouette_samples=40)
    full = internal_metrics(points, clusters)

    assert first["silhouette"] == second["silhouette"]
    assert "40 of 120" in str(first["note"])
    assert first["silhouette"] == pytest.approx(full["silhouette"], abs=0.15)
    assert first["dbi"] == full["dbi"]  # DBI and CHI always use every sample


def test_mismatched_lengths_and_empty_inputs_raise_value_error() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        unsupervised_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="differ in length"):
        internal_metrics(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError):
        unsupervised_accuracy([], [])
    with pytest.raises(ValueError):
        nmi([], [])
    with pytest.raises(ValueError, match="one-dimensional"):
        nmi(np.zeros((2, 2)), np.zeros((2, 2)))


def test_docstring_examples_hold() -> None:
    results = doctest.testmod(uvac.metrics)
    assert results.attempted > 0 and results.failed == 0
