"""Applying a model's novelty score to recordings, and measuring how well it separates.

`window_novelty(trained, windows)`: the raw score and the calibrated novelty of each window
(None for a model saved without a score). `clip_verdict` turns a clip's windows into the clip's
novelty and ``unknown`` at a false-alarm rate: the clip is unknown when most of its real audio
(activity-weighted, digital silence left out) is in windows above the threshold. `separation`
gives AUROC and the false-positive rate at 95 % true-positive rate of a score between a known
and an unknown set (unknown is the positive class). The evaluation's novelty section is
`uvac.evaluation.novelty_report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from torch import Tensor

from uvac.audio import Windows
from uvac.novelty import window_vectors
from uvac.training import TrainedModel

__all__ = [
    "ClipVerdict",
    "Separation",
    "clip_verdict",
    "separation",
    "window_novelty",
]


def window_novelty(trained: TrainedModel, windows: Windows) -> tuple[Tensor, Tensor] | None:
    """``(raw scores (W,), novelty in [0, 1] (W,))`` of normalised model windows."""
    if trained.novelty is None:
        return None
    raw = trained.novelty.score.scores(window_vectors(windows.features, windows.mask))
    return raw, trained.novelty.calibration.novelty(raw)


@dataclass(frozen=True)
class ClipVerdict:
    score: float | None  # activity-weighted mean raw score of the real, scored windows
    novelty: float | None  # of the activity-weighted mean raw score of the real windows
    unknown: bool | None  # None without a score or without real audio
    window_unknown: list[bool | None]  # None for a silent window or without a score


def clip_verdict(
    trained: TrainedModel,
    *,
    raw: Sequence[float | None],
    activity: Sequence[float],
    silence: Sequence[bool],
    false_alarm_rate: float | None = None,
) -> ClipVerdict:
    """The clip's novelty and verdicts at ``false_alarm_rate`` (default: the model's own)."""
    novelty = trained.novelty
    if novelty is None:
        return ClipVerdict(score=None, novelty=None, unknown=None, window_unknown=[None] * len(raw))
    threshold = novelty.calibration.threshold(false_alarm_rate)
    # A window without a score (an encoder that gave no finite embedding) counts like silence.
    window_unknown: list[bool | None] = [
        None if silent or score is None else bool(score > threshold)
        for score, silent in zip(raw, silence, strict=True)
    ]
    real = [index for index, verdict in enumerate(window_unknown) if verdict is not None]
    if not real:
        return ClipVerdict(score=None, novelty=None, unknown=None, window_unknown=window_unknown)
    weights = np.array([max(float(activity[i]), 1e-6) for i in real])
    scores = np.array([float(raw[i] or 0.0) for i in real])
    flagged = np.array([bool(window_unknown[i]) for i in real], dtype=np.float64)
    mean_score = float((weights * scores).sum() / weights.sum())
    clip_novelty = float(novelty.calibration.novelty(torch.tensor([mean_score]))[0])
    unknown = float((weights * flagged).sum() / weights.sum()) > 0.5
    return ClipVerdict(
        score=mean_score,
        novelty=round(clip_novelty, 4),
        unknown=unknown,
        window_unknown=window_unknown,
    )


@dataclass(frozen=True)
class Separation:
    auroc: float
    fpr_at_95_tpr: float  # share of known recordings flagged when 95 % of unknown ones are

    def to_dict(self) -> dict[str, float]:
        return {"auroc": round(self.auroc, 4), "fpr_at_95_tpr": round(self.fpr_at_95_tpr, 4)}


def separation(known: Sequence[float], unknown: Sequence[float]) -> Separation:
    """How well a score (larger = more novel) tells ``unknown`` from ``known`` recordings."""
    if not known or not unknown:
        raise ValueError("separation needs at least one known and one unknown score")
    labels = np.r_[np.zeros(len(known)), np.ones(len(unknown))]
    scores = np.r_[np.asarray(known, dtype=np.float64), np.asarray(unknown, dtype=np.float64)]
    false_positive, true_positive, _ = roc_curve(labels, scores)
    fpr95 = float(false_positive[np.searchsorted(true_positive, 0.95, side="left")])
    return Separation(auroc=float(roc_auc_score(labels, scores)), fpr_at_95_tpr=fpr95)
