"""uvac.selection.run_checks: what a training run warns about."""

from __future__ import annotations

from uvac.selection import MIN_RECORDINGS_PER_CLUSTER, run_warnings, small_data_warning


def test_small_data_is_flagged_below_the_documented_minimum_only() -> None:
    k = 4
    assert small_data_warning(recordings=MIN_RECORDINGS_PER_CLUSTER * k, n_clusters=k) is None
    warning = small_data_warning(recordings=MIN_RECORDINGS_PER_CLUSTER * k - 1, n_clusters=k)
    assert warning is not None and warning["code"] == "small-data"
    assert warning["recordings_per_cluster"] == 9.75
    assert f"under the {MIN_RECORDINGS_PER_CLUSTER}" in warning["message"]


def test_a_sweep_without_a_stable_k_and_a_vanished_cluster_are_warnings() -> None:
    selection = {
        "stable": False, "stability_threshold": 0.8, "chosen_k": 5,
        "candidates": [{"n_clusters": 4, "stability": 0.31}, {"n_clusters": 5, "stability": 0.42}],
    }  # fmt: skip
    identity = {
        "previous": "scenes:v1",
        "disappeared": [{"number": 3, "size": 12, "merged_into": 0, "share": 0.75}],
    }
    warnings = run_warnings(recordings=500, n_clusters=5, selection=selection, identity=identity)
    assert [w["code"] for w in warnings] == ["no-stable-k", "cluster-disappeared"]
    assert "best stability was 0.42 against the threshold 0.8" in warnings[0]["message"]
    assert "Cluster 3 of scenes:v1 (12 recordings)" in warnings[1]["message"]
    assert "75% of its recordings went to cluster 0" in warnings[1]["message"]
    stable = {**selection, "stable": True}
    assert run_warnings(recordings=500, n_clusters=5, selection=stable) == []
