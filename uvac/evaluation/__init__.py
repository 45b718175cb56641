"""Running trained models over recordings and scoring them.

Inference with a trained model (`inference`: audio -> windows -> pi per window and clip), the
paper's five metrics over a data set (`scoring`), the K-means baseline beside a model
(`baselines`), the result tables (`tables`), which recordings an evaluation runs on
(`recordings`), and the novelty of recordings under a model's score with how well it
separates known from unknown (`novelty`).

Imports `uvac.training`, `uvac.audio`, `uvac.models` and the shared leaves.
"""

from __future__ import annotations

from uvac.evaluation.baselines import (
    KMEANS_METHOD,
    LABELS_METHOD,
    evaluate_with_baselines,
    kmeans_baseline,
    labels_as_clusters,
)
from uvac.evaluation.inference import ClipResult, Clusterer, WindowResult, aggregate_windows
from uvac.evaluation.novelty import (
    ClipVerdict,
    Separation,
    clip_verdict,
    separation,
    window_novelty,
)
from uvac.evaluation.novelty_report import novelty_evaluation, unknown_share
from uvac.evaluation.recordings import (
    SPLITS,
    EvaluationRecordings,
    EvaluationSplit,
    evaluation_recordings,
    held_out_paths,
    is_own_dataset,
)
from uvac.evaluation.scoring import (
    FEATURES_DESCRIPTION,
    EvaluationReport,
    RepresentationScores,
    evaluate_clusterer,
    report_from_assignments,
)
from uvac.evaluation.tables import TableRow, render_table, render_titled_table

__all__ = [
    "FEATURES_DESCRIPTION",
    "KMEANS_METHOD",
    "LABELS_METHOD",
    "SPLITS",
    "ClipResult",
    "ClipVerdict",
    "Clusterer",
    "EvaluationRecordings",
    "EvaluationReport",
    "EvaluationSplit",
    "RepresentationScores",
    "Separation",
    "TableRow",
    "WindowResult",
    "aggregate_windows",
    "clip_verdict",
    "evaluate_clusterer",
    "evaluate_with_baselines",
    "evaluation_recordings",
    "held_out_paths",
    "is_own_dataset",
    "kmeans_baseline",
    "labels_as_clusters",
    "novelty_evaluation",
    "render_table",
    "render_titled_table",
    "report_from_assignments",
    "separation",
    "unknown_share",
    "window_novelty",
]
