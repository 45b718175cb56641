"""The cluster browser's map: every window of a data set's recordings placed in 2-D, with its
pi, its cluster and its nearest neighbours in the full embedding space.

Input: a `WindowTable` (one row per window: its recording, start and end, embedding and pi,
in the version's cluster numbering). Output: ``cluster_map.json``, stored in the version's
report area beside the report and read by the browser page (`app.routes.browser`).

The projection is openTSNE's t-SNE with a fixed seed on the embeddings' first 50 principal
components: t-SNE keeps local neighbourhoods, which is what a listener walks along; it is
deterministic for a seed; and openTSNE needs only numpy, scipy and scikit-learn (UMAP would
bring numba and LLVM, whose first call compiles for tens of seconds). A 2-D map distorts
distances, so the neighbours the page lists are found in the full embedding space, never on
the map. Very small tables (fewer windows than t-SNE's perplexity needs) fall back to PCA.

Window count is capped (`MAX_POINTS`, a seeded sample) so the page stays light.

For a model with a novelty score (`uvac.novelty`) each point carries its window's raw score
and calibrated novelty, and the map says the threshold and false-alarm rate it was drawn
with, so the page can grey the windows the model finds foreign (at the version's rate now:
the page reads it from the novelty route). A model without a score has ``novelty: null`` and
``novelty_unavailable`` says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

__all__ = [
    "CLUSTER_MAP_FILE",
    "CLUSTER_MAP_FORMAT",
    "MAX_POINTS",
    "NEIGHBOURS",
    "NO_NOVELTY_SCORE",
    "PROJECTION_FORMAT",
    "NoveltyThreshold",
    "Projector",
    "WindowTable",
    "build_cluster_map",
    "project_windows",
]

CLUSTER_MAP_FILE = "cluster_map.json"
CLUSTER_MAP_FORMAT = "uvac-cluster-map"
MAX_POINTS = 12_000
NEIGHBOURS = 5
TYPICAL_WINDOWS = 5
# Part of a remembered projection's key (`worker.cluster_map`): bump it when the way windows
# are placed changes.
PROJECTION_FORMAT = 1
_PCA_DIMENSIONS = 50
_MIN_TSNE_POINTS = 16
NO_NOVELTY_SCORE = (
    "This version was published without a novelty score (it predates them), so no window "
    "is marked foreign; a version trained now has one."
)


@dataclass(frozen=True)
class WindowTable:
    """Every window of a set of recordings."""

    recordings: list[str]  # R paths, relative to the data set
    labels: list[str | None]  # R labels (None without one)
    recording: np.ndarray  # (N,) int: each window's recording index
    starts_s: np.ndarray  # (N,) float
    ends_s: np.ndarray  # (N,) float
    embeddings: np.ndarray  # (N, D) float: the model's input space, time-averaged
    probabilities: np.ndarray  # (N, K) float: pi, rows sum to 1
    novelty_scores: np.ndarray | None = None  # (N,) raw novelty scores; None without a score
    novelty: np.ndarray | None = None  # (N,) calibrated novelty in [0, 1]


@dataclass(frozen=True)
class NoveltyThreshold:
    """Where a window becomes foreign, as the map was drawn: the raw score's threshold at
    the version's false-alarm rate."""

    method: str
    false_alarm_rate: float
    threshold: float


Projector = Callable[..., tuple[np.ndarray, dict[str, Any]]]
"""``project(embeddings (N, D), *, seed, n_jobs) -> (points (N, 2), how they were made)``."""


def project_windows(
    embeddings: np.ndarray, *, seed: int, n_jobs: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """The map's 2-D points of ``embeddings`` and a description of the projection."""
    n = embeddings.shape[0]
    dimensions = min(_PCA_DIMENSIONS, n, embeddings.shape[1])
    reduced = PCA(n_components=dimensions, random_state=seed).fit_transform(embeddings)
    if n < _MIN_TSNE_POINTS:
        projected = np.zeros((n, 2))
        projected[:, : min(2, reduced.shape[1])] = reduced[:, :2]
        return projected, {"method": "pca", "seed": seed}
    from openTSNE import TSNE

    perplexity = float(min(30.0, (n - 1) / 3.0))
    embedding = TSNE(
        n_components=2, perplexity=perplexity, random_state=seed, n_jobs=n_jobs, verbose=False
    ).fit(reduced)
    return np.asarray(embedding), {
        "method": "openTSNE",
        "seed": seed,
        "perplexity": perplexity,
        "pca_dimensions": dimensions,
    }


def _normalise(points: np.ndarray) -> np.ndarray:
    """Into [0, 1] on both axes, keeping the aspect ratio (the page scales it to its canvas)."""
    low = points.min(axis=0)
    span = float((points.max(axis=0) - low).max()) or 1.0
    return (points - low) / span


def build_cluster_map(
    table: WindowTable,
    *,
    dataset: dict[str, str],
    seed: int = 0,
    n_jobs: int = 1,
    max_points: int = MAX_POINTS,
    novelty: NoveltyThreshold | None = None,
    project: Projector = project_windows,
) -> dict:
    """The ``cluster_map.json`` document of ``table`` (the page's data, columnar). With
    ``novelty`` (and the table's scores), each point carries its novelty and whether it is
    beyond the threshold. ``project`` places the windows (`project_windows`, or one that
    remembers its results)."""
    n, k = table.probabilities.shape
    chosen = np.arange(n)
    if n > max_points:
        chosen = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
    embeddings = np.asarray(table.embeddings[chosen], dtype=np.float64)
    pi = np.asarray(table.probabilities[chosen], dtype=np.float64)
    if len(chosen):
        xy, projection = project(embeddings, seed=seed, n_jobs=n_jobs)
        xy = _normalise(xy)
        count = min(NEIGHBOURS + 1, len(chosen))
        _, nearest = NearestNeighbors(n_neighbors=count).fit(embeddings).kneighbors(embeddings)
        neighbours = [[int(j) for j in row if j != i][:NEIGHBOURS] for i, row in enumerate(nearest)]
    else:
        xy, projection, neighbours = np.zeros((0, 2)), {"method": "none", "seed": seed}, []
    clusters = pi.argmax(axis=1) if len(chosen) else np.zeros(0, dtype=int)
    document: dict[str, Any] = {
        "format": CLUSTER_MAP_FORMAT,
        "format_version": 1,
        "dataset": dataset,
        "n_clusters": k,
        "n_windows": int(n),
        "projection": projection,
        "embedding_dimensions": int(table.embeddings.shape[1]) if n else 0,
        "recordings": [
            {"path": path, "label": label}
            for path, label in zip(table.recordings, table.labels, strict=True)
        ],
        "points": {
            "x": [round(float(value), 4) for value in xy[:, 0]],
            "y": [round(float(value), 4) for value in xy[:, 1]],
            "recording": [int(value) for value in table.recording[chosen]],
            "start_s": [round(float(value), 3) for value in table.starts_s[chosen]],
            "end_s": [round(float(value), 3) for value in table.ends_s[chosen]],
            "cluster": [int(value) for value in clusters],
            "pi": [[round(float(value), 3) for value in row] for row in pi],
            "neighbours": neighbours,
        },
        "typical": _typical(pi, clusters, table.recording[chosen], k),
        "novelty": None,
        "novelty_unavailable": NO_NOVELTY_SCORE,
    }
    if novelty is not None and table.novelty_scores is not None:
        _add_novelty(document, table.novelty_scores[chosen], table.novelty, chosen, novelty)
    return document


def _add_novelty(
    document: dict[str, Any],
    scores: np.ndarray,
    calibrated: np.ndarray | None,
    chosen: np.ndarray,
    novelty: NoveltyThreshold,
) -> None:
    """Each point's raw score, calibrated novelty and verdict at the threshold."""
    raw = [_finite(value) for value in scores]
    unknown = [bool(value > novelty.threshold) if np.isfinite(value) else None for value in scores]
    points = document["points"]
    points["novelty_score"] = raw
    points["novelty"] = (
        [_finite(value) for value in calibrated[chosen]]
        if calibrated is not None
        else [None] * len(raw)
    )
    points["unknown"] = unknown
    document["novelty"] = {
        "method": novelty.method,
        "false_alarm_rate": novelty.false_alarm_rate,
        "threshold": novelty.threshold,
        "unknown_windows": sum(1 for flag in unknown if flag),
    }
    document["novelty_unavailable"] = None


def _finite(value: float) -> float | None:
    """A score rounded for the page, None when it is not finite (a window without one)."""
    value = float(value)
    return round(value, 4) if np.isfinite(value) else None


def _typical(
    pi: np.ndarray, clusters: np.ndarray, recording: np.ndarray, k: int
) -> list[list[int]]:
    """Per cluster, its most typical windows (highest pi), one per recording: point indices."""
    typical: list[list[int]] = []
    for cluster in range(k):
        members = np.flatnonzero(clusters == cluster)
        ranked = members[np.argsort(-pi[members, cluster], kind="stable")]
        seen: set[int] = set()
        chosen: list[int] = []
        for index in ranked:
            if int(recording[index]) in seen:
                continue
            seen.add(int(recording[index]))
            chosen.append(int(index))
            if len(chosen) == TYPICAL_WINDOWS:
                break
        typical.append(chosen)
    return typical


def cluster_map_recordings(document: dict) -> Sequence[str]:
    """The recording paths a map lists (the only ones its page may play)."""
    return [str(entry["path"]) for entry in document.get("recordings") or []]
