"""Fitting a model's novelty score at training time, calibrated on held-out windows.

The held-out windows are cross-fitted: the training clips are dealt into `CALIBRATION_FOLDS`
folds (a fixed permutation, so the same data give the same folds), each fold is scored by a
score fitted on the others, and the score that ships is fitted on every window. Every
training window then has a score from a fit that never saw its clip, so the threshold rests
on all the clips rather than on a small held-out share. Whole clips go to one fold, because
windows of one clip resemble each other more than a new recording resembles them.

This split is local to the novelty score (a later held-out split of training may replace it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from uvac.novelty.calibration import DEFAULT_FALSE_ALARM_RATE, Calibration
from uvac.novelty.score import DEFAULT_SHRINKAGE, NoveltyScore

__all__ = ["CALIBRATION_FOLDS", "FittedNovelty", "fit_novelty"]

CALIBRATION_FOLDS = 5
_FOLD_SEED = 0


@dataclass(frozen=True)
class FittedNovelty:
    """A model's novelty score and its calibration: what the artifact stores."""

    score: NoveltyScore
    calibration: Calibration


def calibration_folds(clip_index: Tensor, *, folds: int = CALIBRATION_FOLDS) -> Tensor:
    """Each window's fold ``(N,)``: its clip's place in a fixed permutation of the clips."""
    clips = torch.unique(clip_index)
    generator = torch.Generator().manual_seed(_FOLD_SEED)
    order = clips[torch.randperm(clips.shape[0], generator=generator)]
    fold_of_clip = {int(clip): position % folds for position, clip in enumerate(order)}
    return torch.tensor([fold_of_clip[int(c)] for c in clip_index], dtype=torch.int64)


def fit_novelty(
    vectors: Tensor,
    clip_index: Tensor,
    *,
    n_clusters: int,
    shrinkage: float = DEFAULT_SHRINKAGE,
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
    folds: int = CALIBRATION_FOLDS,
) -> FittedNovelty | None:
    """The score on all ``vectors`` ``(N, D)`` and its cross-fitted calibration; None when
    fewer than two clips (or too few windows) leave nothing to hold out."""
    n_clips = int(torch.unique(clip_index).shape[0])
    folds = min(folds, n_clips)
    if folds < 2 or vectors.shape[0] < 4:
        return None
    fold = calibration_folds(clip_index, folds=folds)
    held_out = torch.empty(vectors.shape[0], dtype=torch.float32)
    for part in range(folds):
        inside = fold != part
        if int(inside.sum()) < 2:
            return None
        fitted = NoveltyScore.fit(vectors[inside], n_clusters=n_clusters, shrinkage=shrinkage)
        held_out[~inside] = fitted.scores(vectors[~inside])
    return FittedNovelty(
        score=NoveltyScore.fit(vectors, n_clusters=n_clusters, shrinkage=shrinkage),
        calibration=Calibration.from_scores(held_out, false_alarm_rate=false_alarm_rate),
    )
