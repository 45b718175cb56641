"""Fitting the K-means baseline model the way `uvac.training.trainer.fit` fits the others: the same
arguments, progress report, cancellation check and history."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from uvac.errors import RunCancelled
from uvac.models import KMeansClusterer
from uvac.training.config import TrainConfig
from uvac.training.history import EpochRecord, TrainingHistory, label_metrics
from uvac.training.progress import Progress

__all__ = ["fit_kmeans"]


def fit_kmeans(
    model: KMeansClusterer,
    features: Tensor,
    mask: Tensor,
    config: TrainConfig,
    labels: Sequence[int] | None,
    progress: Callable[[Progress], None] | None,
    should_stop: Callable[[], bool] | None,
) -> TrainingHistory:
    """Fit the K-means baseline on the windows, reported as one finished "epoch" whose loss
    is the mean squared distance to the nearest centroid."""
    if should_stop is not None and should_stop():
        raise RunCancelled("training cancelled before K-means started")
    started = time.perf_counter()
    model.fit(features, mask, seed=config.seed)
    with torch.inference_mode():
        distances = model.squared_distances(features, mask)  # (N, K)
        nearest = distances.min(dim=1)
        inertia = float(nearest.values.mean())
    accuracy, nmi_value, used = label_metrics(nearest.indices, labels)
    seconds = time.perf_counter() - started
    record = EpochRecord(
        epoch=1,
        loss=inertia,  # mean squared distance to the nearest centroid
        reconstruction=inertia,
        kl_z=0.0,
        kl_y=0.0,
        balance=0.0,
        temperature=0.0,
        learning_rate=0.0,
        accuracy=accuracy,
        nmi=nmi_value,
        clusters_used=used,
        seconds=seconds,
    )
    if progress is not None:
        progress(
            Progress.training(
                record, epochs=1, step=1, steps=1,
                elapsed_seconds=seconds, eta_seconds=0.0, epoch_done=True,
            )
        )  # fmt: skip
    return TrainingHistory([record])
