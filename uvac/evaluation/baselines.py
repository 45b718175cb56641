"""The paper's reference rows (Table I), on exactly the clips and feature vectors a model was
evaluated on: K-means with the same K, and the labels themselves as clusters."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from sklearn.cluster import KMeans

from uvac.evaluation.scoring import (
    FEATURES_DESCRIPTION,
    EvaluationReport,
    ProgressCallback,
    evaluate_clusterer,
    report_from_assignments,
)

if TYPE_CHECKING:
    from uvac.audio import DatasetItem, EmbeddingCache
    from uvac.training import TrainedModel

__all__ = ["KMEANS_METHOD", "LABELS_METHOD", "evaluate_with_baselines", "kmeans_baseline",
           "labels_as_clusters"]  # fmt: skip

KMEANS_METHOD = "K-means (same features)"
LABELS_METHOD = "labels as clusters"


def kmeans_baseline(
    report: EvaluationReport, *, seed: int = 0, n_init: int = 10
) -> EvaluationReport:
    """K-means with the same K on the same clips' feature vectors ("features" space), seeded.

    Fitted on the evaluated clips themselves (transductive), which favours K-means; its
    "latent" is the feature space, so both spaces carry the same scores.
    """
    started = time.perf_counter()
    features = report.representations["features"]
    n_clusters = min(report.n_clusters, features.shape[0])
    kmeans = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed)
    assignments = kmeans.fit_predict(features.astype(np.float64)).astype(np.int64)
    description = f"{FEATURES_DESCRIPTION}; K-means clusters this space directly"
    baseline = report_from_assignments(
        method=KMEANS_METHOD,
        model_type="kmeans",
        n_clusters=report.n_clusters,
        paths=report.paths,
        labels=report.labels,
        assignments=assignments,
        representations={"features": features},
        descriptions={"features": description},
    )
    baseline.description = (
        f"K-means (k-means++, n_init={n_init}, random_state={seed}) fitted on these clips' "
        "feature vectors, one per clip"
    )
    baseline.scores["latent"] = dataclasses.replace(baseline.scores["features"], name="latent")
    baseline.seconds = time.perf_counter() - started
    return baseline


def labels_as_clusters(report: EvaluationReport) -> EvaluationReport | None:
    """The labels themselves scored as a clustering, in the same spaces as `report`.

    Only the labelled clips take part; K is the number of distinct labels. None when no clip
    has a label.
    """
    started = time.perf_counter()
    keep = [i for i, label in enumerate(report.labels) if label is not None]
    if not keep:
        return None
    labels = [str(report.labels[i]) for i in keep]
    names = sorted(set(labels))
    assignments = np.array([names.index(label) for label in labels], dtype=np.int64)
    representations = {name: array[keep] for name, array in report.representations.items()}
    descriptions = {name: s.description for name, s in report.scores.items()}
    reference = report_from_assignments(
        method=LABELS_METHOD,
        model_type=None,
        n_clusters=len(names),
        paths=[report.paths[i] for i in keep],
        labels=list(labels),
        assignments=assignments,
        representations=representations,
        descriptions=descriptions,
    )
    reference.cluster_to_label = dict(enumerate(names))
    reference.description = "the labels themselves as clusters (labelled clips only)"
    reference.seconds = time.perf_counter() - started
    return reference


def evaluate_with_baselines(
    trained_model: TrainedModel,
    items: Sequence[DatasetItem],
    *,
    batch_size: int = 64,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    embedding_cache: EmbeddingCache | None = None,
) -> list[EvaluationReport]:
    """Table I rows for one data set: this model, K-means on the same data, labels as
    clusters (the last only when there are labels). Embeddings are read through
    ``embedding_cache`` (`evaluate_clusterer`)."""
    report = evaluate_clusterer(
        trained_model,
        items,
        batch_size=batch_size,
        progress=progress,
        embedding_cache=embedding_cache,
    )
    rows = [report, kmeans_baseline(report, seed=seed)]
    reference = labels_as_clusters(report)
    if reference is not None:
        rows.append(reference)
    return rows
