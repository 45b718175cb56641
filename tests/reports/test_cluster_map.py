"""reports.cluster_map: the browser's map document from a table of windows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from reports.cluster_map import (
    NEIGHBOURS,
    NO_NOVELTY_SCORE,
    NoveltyThreshold,
    WindowTable,
    build_cluster_map,
)


def _table(n_recordings: int, *, windows: int = 2, k: int = 3, seed: int = 0) -> WindowTable:
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, k, n_recordings)
    recording = np.repeat(np.arange(n_recordings), windows)
    centres = rng.normal(size=(k, 8)) * 5
    embeddings = centres[classes[recording]] + rng.normal(size=(recording.size, 8))
    pi = rng.dirichlet(np.ones(k), size=recording.size)
    return WindowTable(
        recordings=[f"c{c}/r{i}.wav" for i, c in enumerate(classes)],
        labels=[f"class {c}" for c in classes],
        recording=recording,
        starts_s=np.tile(np.arange(windows) * 2.5, n_recordings),
        ends_s=np.tile(np.arange(windows) * 2.5 + 5.0, n_recordings),
        embeddings=embeddings,
        probabilities=pi,
    )


def test_every_window_is_a_point_with_its_cluster_pi_and_place() -> None:
    table = _table(30)
    document = build_cluster_map(table, dataset={"id": "ds_a", "digest": "d"})
    points = document["points"]
    assert document["n_windows"] == len(points["x"]) == 60
    assert document["projection"]["method"] == "openTSNE"
    assert points["cluster"] == [int(c) for c in table.probabilities.argmax(axis=1)]
    assert points["recording"] == [int(r) for r in table.recording]
    assert min(points["x"]) == pytest.approx(0.0) and min(points["y"]) == pytest.approx(0.0)
    assert max(max(points["x"]), max(points["y"])) == pytest.approx(1.0)
    assert np.allclose(points["pi"], table.probabilities, atol=5e-4)
    assert document["recordings"][3] == {"path": table.recordings[3], "label": table.labels[3]}


def test_neighbours_are_the_nearest_in_the_full_space_not_on_the_map() -> None:
    table = _table(20)
    document = build_cluster_map(table, dataset={"id": "ds_a", "digest": "d"})
    distances = np.linalg.norm(table.embeddings[:, None] - table.embeddings[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    for index, neighbours in enumerate(document["points"]["neighbours"]):
        assert len(neighbours) == NEIGHBOURS and index not in neighbours
        expected = np.sort(distances[index])[:NEIGHBOURS]
        assert np.allclose(np.sort(distances[index, neighbours]), expected)


def test_the_map_is_the_same_for_the_same_seed() -> None:
    first = build_cluster_map(_table(25), dataset={"id": "ds_a", "digest": "d"}, seed=3)
    second = build_cluster_map(_table(25), dataset={"id": "ds_a", "digest": "d"}, seed=3)
    assert first["points"]["x"] == second["points"]["x"]


def test_typical_windows_are_the_highest_pi_one_per_recording() -> None:
    table = _table(40, windows=3)
    document = build_cluster_map(table, dataset={"id": "ds_a", "digest": "d"})
    pi = np.asarray(document["points"]["pi"])
    for cluster, typical in enumerate(document["typical"]):
        members = [i for i, c in enumerate(document["points"]["cluster"]) if c == cluster]
        recordings = [document["points"]["recording"][i] for i in typical]
        assert len(set(recordings)) == len(recordings)
        assert all(document["points"]["cluster"][i] == cluster for i in typical)
        assert pi[typical[0], cluster] == pytest.approx(pi[members, cluster].max())


def test_a_tiny_table_falls_back_to_pca_and_a_large_one_is_sampled() -> None:
    tiny = build_cluster_map(_table(3), dataset={"id": "ds_a", "digest": "d"})
    assert tiny["projection"]["method"] == "pca" and len(tiny["points"]["x"]) == 6
    capped = build_cluster_map(_table(50), dataset={"id": "ds_a", "digest": "d"}, max_points=40)
    assert capped["n_windows"] == 100 and len(capped["points"]["x"]) == 40
    assert max(max(row) for row in capped["points"]["neighbours"]) < 40


def test_each_window_carries_its_novelty_and_the_verdict_at_the_threshold() -> None:
    table = _table(30, windows=2)
    rng = np.random.default_rng(1)
    scores = rng.exponential(10.0, size=60)
    scores[5] = np.nan  # a window without a finite score has no verdict
    scored = dataclasses.replace(table, novelty_scores=scores, novelty=rng.uniform(size=60))
    threshold = NoveltyThreshold(method="m", false_alarm_rate=0.1, threshold=15.0)
    document = build_cluster_map(scored, dataset={"id": "ds_a", "digest": "d"}, novelty=threshold)
    points = document["points"]
    expected = [None if np.isnan(s) else bool(s > 15.0) for s in scores]
    assert points["unknown"] == expected and any(expected)
    assert not all(flag for flag in expected if flag is not None)
    assert points["novelty_score"][5] is None and points["novelty"][5] is not None
    assert document["novelty"] == {
        "method": "m",
        "false_alarm_rate": 0.1,
        "threshold": 15.0,
        "unknown_windows": sum(1 for flag in expected if flag),
    }
    assert document["novelty_unavailable"] is None
    # A sampled map keeps each point's own score.
    capped = build_cluster_map(
        scored, dataset={"id": "ds_a", "digest": "d"}, novelty=threshold, max_points=20
    )
    kept = [
        (r, s)
        for r, s in zip(capped["points"]["recording"], capped["points"]["start_s"], strict=True)
    ]
    for index, (recording, start) in enumerate(kept):
        source = int(np.flatnonzero((table.recording == recording) & (table.starts_s == start))[0])
        assert capped["points"]["unknown"][index] == expected[source]


def test_a_model_without_a_novelty_score_says_why_nothing_is_greyed() -> None:
    document = build_cluster_map(_table(10), dataset={"id": "ds_a", "digest": "d"})
    assert document["novelty"] is None and document["novelty_unavailable"] == NO_NOVELTY_SCORE
    assert "unknown" not in document["points"]


def test_the_report_names_section_escapes_names() -> None:
    from reports import current_names_section

    section = current_names_section({"0": "<script>alert(1)</script>", "2": "Rain"}, n_clusters=3)
    assert "<script>" not in section
    assert "<td>0</td><td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in section
    assert "<td>1</td><td></td>" in section and "<td>2</td><td>Rain</td>" in section
