"""Fitting a model's novelty score at training time, calibrated on held-out windows.

The held-out windows are cross-fitted: the training clips are dealt into `CALIBRATION_FOLDS`
folds (a fixed permutation, so the same data give the same folds), each fold is scored by a
score fitted on the others, and the score that ships is fitted on every window. Every
training window then has a score from a fit that never saw its clip, so the threshold rests
on all the clips rather than on a small held-out share. Whole clips go to one fold, because
windows of one clip resemble each other more than a new recording resembles them; and so do
clips that are likely cut from one recording (takes of one source, neighbouring stretches of
one session): clips are linked when their mean vectors are closer than the
`SOURCE_LINK_PERCENTILE` percentile of the single-linkage merge distances between clips, and
each linked group goes to one fold (`source_groups`). Held-out clips that have a near twin in
the fitted part would score lower than new recordings do and put the threshold too low.

This split is local to the novelty score (a later held-out split of training may replace it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from torch import Tensor

from uvac.errors import RunCancelled
from uvac.novelty.calibration import DEFAULT_FALSE_ALARM_RATE, Calibration
from uvac.novelty.score import DEFAULT_SHRINKAGE, NoveltyScore

__all__ = ["CALIBRATION_FOLDS", "FittedNovelty", "fit_novelty"]

CALIBRATION_FOLDS = 5
# Chosen by benchmarks/novelty.py: the share of known test clips flagged, against the rate.
SOURCE_LINK_PERCENTILE = 25.0
_FOLD_SEED = 0


@dataclass(frozen=True)
class FittedNovelty:
    """A model's novelty score and its calibration: what the artifact stores."""

    score: NoveltyScore
    calibration: Calibration


def source_groups(vectors: Tensor, clip_index: Tensor) -> Tensor:
    """Each window's group ``(N,)``: clips linked as likely cut from one recording share one."""
    clips, inverse = torch.unique(clip_index, return_inverse=True)
    if clips.shape[0] < 3:
        return inverse
    values = vectors.to(torch.float64)
    std = values.std(dim=0, correction=0).clamp_min(1e-6)
    standard = (values - values.mean(dim=0)) / std
    sums = torch.zeros(clips.shape[0], standard.shape[1], dtype=torch.float64)
    sums.index_add_(0, inverse, standard)
    means = sums / torch.bincount(inverse).to(torch.float64)[:, None]  # (C, D)
    directions = torch.nn.functional.normalize(means, dim=1).float()  # (C, D)
    # Euclidean distances between unit vectors from one matrix product (|a - b|^2 = 2 - 2 a.b),
    # far cheaper than pairwise loops over D dimensions.
    cosines = directions @ directions.T  # (C, C)
    distances = (2.0 - 2.0 * cosines).clamp_min(0.0).sqrt().numpy()
    np.fill_diagonal(distances, 0.0)
    merges = linkage(squareform(distances, checks=False), method="single")
    threshold = float(np.percentile(merges[:, 2], SOURCE_LINK_PERCENTILE))
    group_of_clip = torch.from_numpy(fcluster(merges, threshold, criterion="distance")).long()
    return group_of_clip[inverse]


def calibration_folds(groups: Tensor, *, folds: int = CALIBRATION_FOLDS) -> Tensor:
    """Each window's fold ``(N,)``: its group's place in a fixed permutation of the groups."""
    clips = torch.unique(groups)
    generator = torch.Generator().manual_seed(_FOLD_SEED)
    order = clips[torch.randperm(clips.shape[0], generator=generator)]
    fold_of_clip = {int(clip): position % folds for position, clip in enumerate(order)}
    return torch.tensor([fold_of_clip[int(c)] for c in groups], dtype=torch.int64)


def fit_novelty(
    vectors: Tensor,
    clip_index: Tensor,
    *,
    n_clusters: int,
    shrinkage: float = DEFAULT_SHRINKAGE,
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
    folds: int = CALIBRATION_FOLDS,
    should_stop: Callable[[], bool] | None = None,
) -> FittedNovelty | None:
    """The score on all ``vectors`` ``(N, D)`` and its cross-fitted calibration; None when
    fewer than two groups of clips (or too few windows) leave nothing to hold out.
    ``should_stop()`` is asked before each fit; True raises `uvac.errors.RunCancelled`."""
    if vectors.shape[0] < 4:
        return None
    groups = source_groups(vectors, clip_index)
    folds = min(folds, int(torch.unique(groups).shape[0]))
    if folds < 2:
        return None
    fold = calibration_folds(groups, folds=folds)
    _check_stop(should_stop)
    score = NoveltyScore.fit(vectors, n_clusters=n_clusters, shrinkage=shrinkage)
    # Each fold's K-means starts from the whole fit's centres: four fifths of the same windows
    # settle near them in a few steps, where four fresh starts would each take many.
    start = score.centres_of()
    held_out = torch.empty(vectors.shape[0], dtype=torch.float32)
    for part in range(folds):
        inside = fold != part
        if int(inside.sum()) < 2:
            return None
        _check_stop(should_stop)
        fitted = NoveltyScore.fit(
            vectors[inside], n_clusters=n_clusters, shrinkage=shrinkage, start=start
        )
        held_out[~inside] = fitted.scores(vectors[~inside])
    return FittedNovelty(
        score=score,
        calibration=Calibration.from_scores(held_out, false_alarm_rate=false_alarm_rate),
    )


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise RunCancelled("the novelty fit was stopped")
