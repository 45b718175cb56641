"""Matching clusters across versions: Hungarian pairs, renumbering, merged and new clusters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uvac.audio.feature_config import FeatureConfig
from uvac.audio.features import NormStats
from uvac.models import KMeansClusterer
from uvac.selection.cluster_identity import (
    NAME_CARRY_SHARE,
    RenumberedModel,
    carried_names,
    cluster_order_from,
    match_clusters,
    name_suggestions,
    renumbered,
)
from uvac.training.artifact import TrainedModel


def test_a_permutation_is_recovered_exactly() -> None:
    rng = np.random.default_rng(0)
    previous = rng.integers(0, 6, size=300)
    permutation = np.array([3, 5, 0, 1, 4, 2])  # previous number -> new model output index
    current = permutation[previous]
    match = match_clusters(previous, current, previous_k=6, current_k=6)
    assert match.agreement == 1.0
    assert match.renumber(current).tolist() == previous.tolist()
    assert match.order == permutation.tolist()  # order[number] = output index
    assert match.disappeared == []
    assert all(not c["new"] and c["agreement"] == 1.0 for c in match.clusters)


def test_a_merged_cluster_is_reported_and_a_split_gets_a_new_number() -> None:
    # Earlier clusters 0 and 1 merge into output 2; earlier cluster 2 splits into outputs 0, 1.
    previous = np.array([0] * 10 + [1] * 6 + [2] * 20)
    current = np.array([2] * 16 + [0] * 12 + [1] * 8)
    match = match_clusters(previous, current, previous_k=3, current_k=3)
    numbers = match.numbers
    assert numbers[2] == 0  # the merged cluster keeps the larger earlier cluster's number
    assert numbers[0] == 2  # the split's larger part keeps cluster 2's number
    assert numbers[1] == 1  # no free number but the vanished one: reused, marked new
    by_number = {c["number"]: c for c in match.clusters}
    assert by_number[1]["new"] and by_number[1]["previous"] is None
    assert not by_number[0]["new"] and by_number[0]["agreement"] == pytest.approx(10 / 16)
    assert match.disappeared == [{"number": 1, "size": 6, "merged_into": 0, "share": 1.0}]
    assert match.agreement == pytest.approx((10 + 12) / 36)


def test_more_clusters_than_before_get_numbers_no_earlier_cluster_had() -> None:
    previous = np.array([0] * 10 + [1] * 10)
    current = np.array([1] * 10 + [0] * 7 + [2] * 3)  # earlier 1 split into outputs 0 and 2
    match = match_clusters(previous, current, previous_k=2, current_k=3)
    assert match.numbers[1] == 0
    new = [c for c in match.clusters if c["new"]]
    assert [c["number"] for c in new] == [2]
    assert match.disappeared == []


def test_fewer_clusters_renumber_a_kept_cluster_beyond_k() -> None:
    previous = np.array([0] * 5 + [1] * 5 + [2] * 5)
    current = np.array([0] * 10 + [1] * 5)  # 0 and 1 merged; earlier 2 is output 1
    match = match_clusters(previous, current, previous_k=3, current_k=2)
    entry = next(c for c in match.clusters if c["output"] == 1)
    assert entry["previous"] == 2 and entry["renumbered"] and entry["number"] == 1
    assert [d["number"] for d in match.disappeared] == [1]


def test_bad_assignments_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        match_clusters([0, 1], [0], previous_k=2, current_k=2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        match_clusters([0, 2], [0, 1], previous_k=2, current_k=2)


def test_names_carry_over_to_kept_clusters_only() -> None:
    previous = np.array([0] * 10 + [1] * 6 + [2] * 20)
    current = np.array([2] * 16 + [0] * 12 + [1] * 8)
    match = match_clusters(previous, current, previous_k=3, current_k=3)
    earlier = {"0": "quiet", "1": "music", "2": "traffic"}
    # Earlier cluster 1 (6 recordings) has no kept successor; earlier 2 keeps its number but
    # only 12 of its 20 recordings: a majority keeps a number, not a name.
    assert carried_names(match, earlier, min_share=0.5) == {"0": "quiet", "2": "traffic"}
    assert carried_names(match, earlier) == {"0": "quiet"}
    assert name_suggestions(match, earlier) == {
        "2": {"name": "traffic", "previous": 2, "kept_share": pytest.approx(0.6)}
    }


def test_a_name_is_kept_when_the_match_is_strong_and_dropped_when_weak() -> None:
    # Earlier cluster 0 (10 recordings) -> new output 1 keeps 9 (strong, 0.9); earlier 1
    # (10 recordings) -> new output 0 keeps 6, 4 go to output 1 (weak, 0.6).
    previous = np.array([0] * 10 + [1] * 10)
    current = np.array([1] * 9 + [0] + [0] * 6 + [1] * 4)
    match = match_clusters(previous, current, previous_k=2, current_k=2)
    names = {"0": "Helicopter", "1": "Rain"}
    assert NAME_CARRY_SHARE == 0.8
    assert match.clusters[0]["kept_share"] == pytest.approx(0.9)
    assert carried_names(match, names) == {"0": "Helicopter"}
    assert name_suggestions(match, names) == {
        "1": {"name": "Rain", "previous": 1, "kept_share": pytest.approx(0.6)}
    }


def _kmeans_model() -> TrainedModel:
    model = KMeansClusterer(n_clusters=3, n_features=16, n_frames=1)
    model.centroids.zero_()
    model.centroids[1, 0] = 1.0
    model.centroids[2, 1] = 1.0
    model.fitted.fill_(True)
    stats = NormStats(mean=torch.zeros(16), std=torch.ones(16), minimum=0.0, maximum=1.0)
    return TrainedModel(model=model, feature_config=FeatureConfig(n_mels=16), norm_stats=stats)


def test_renumbered_model_reorders_pi_and_keeps_the_model_type() -> None:
    trained = _kmeans_model()
    x = torch.zeros(2, 1, 1, 16)
    x[0, 0, 0, 0] = 1.0  # output 1
    x[1, 0, 0, 1] = 1.0  # output 2
    served = renumbered(trained, {"cluster_identity": {"order": [2, 0, 1]}})
    assert isinstance(served.model, RenumberedModel)
    assert served.model.model_type == "kmeans" and served.n_clusters == 3
    assert served.model.assignments(x).tolist() == [2, 0]  # output 1 -> number 2, 2 -> 0
    assert renumbered(trained, {}) is trained
    assert cluster_order_from({"cluster_identity": {"order": [0, 0, 1]}}, n_clusters=3) is None
