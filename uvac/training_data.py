"""Recordings -> training windows: decode, fit normalisation on these clips, cut windows.

Two passes over the files: the first computes raw log-mels and fits `NormStats` on them (the
training clips only, never the evaluation clips), the second decodes again and cuts normalised
windows. Decoding twice keeps memory at the size of the windows instead of holding every
waveform (a 10 s clip at 16 kHz is 20 times larger than its log-mel).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from uvac.audio import load_audio
from uvac.datasets import DatasetItem
from uvac.errors import AudioError, DatasetError, TrainingCancelled
from uvac.features import FeatureConfig, FeatureExtractor, NormStats, fit_norm_stats

__all__ = ["TrainingWindows", "windows_for_training"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingWindows:
    """Every window of every usable training clip."""

    features: Tensor  # (N, 1, T, M) in [0, 1]
    mask: Tensor  # (N, T), 1 = real active audio
    clip_index: Tensor  # (N,) int64: which clip (index into the usable clips) a window is from
    labels: list[int] | None  # (N,) label id per window; None unless every clip has a label
    label_names: list[str] | None  # label id -> label
    norm_stats: NormStats
    n_clips: int
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}

    def summary(self) -> dict[str, Any]:
        """JSON-able facts for a model's metadata."""
        return {
            "n_clips": self.n_clips,
            "n_windows": int(self.features.shape[0]),
            "n_skipped": len(self.skipped),
            "labels": self.label_names,
        }


def windows_for_training(
    items: Sequence[DatasetItem],
    *,
    feature_config: FeatureConfig,
    should_stop: Callable[[], bool] | None = None,
) -> TrainingWindows:
    """Windows of ``items`` normalised with statistics fitted on them.

    Undecodable files are skipped with a warning; `DatasetError` when none is usable;
    `TrainingCancelled` when ``should_stop()`` says so (asked before every file).
    """
    extractor = FeatureExtractor(feature_config)
    log_mels: list[Tensor] = []
    usable: list[DatasetItem] = []
    skipped: list[dict[str, str]] = []
    for item in items:
        _check_stop(should_stop)
        try:
            audio = load_audio(item.path, sample_rate=feature_config.sample_rate)
        except AudioError as error:
            logger.warning("skipping %s: %s", item.path, error)
            skipped.append({"path": str(item.path), "reason": str(error)})
            continue
        log_mels.append(extractor.log_mel(audio))
        usable.append(item)
    if not usable:
        raise DatasetError(f"none of the {len(items)} recordings could be decoded")
    stats = fit_norm_stats(log_mels, feature_config)
    del log_mels

    extractor = FeatureExtractor(feature_config, stats)
    features, masks, clip_index = [], [], []
    for index, item in enumerate(usable):
        _check_stop(should_stop)
        windows = extractor.windows(load_audio(item.path, sample_rate=feature_config.sample_rate))
        features.append(windows.features)
        masks.append(windows.mask)
        clip_index.append(torch.full((len(windows),), index, dtype=torch.int64))
    clip_of_window = torch.cat(clip_index)  # (N,)

    label_names: list[str] | None = None
    labels: list[int] | None = None
    if all(item.label is not None for item in usable):
        label_names = sorted({str(item.label) for item in usable})
        clip_labels = [label_names.index(str(item.label)) for item in usable]
        labels = [clip_labels[i] for i in clip_of_window.tolist()]
    return TrainingWindows(
        features=torch.cat(features),
        mask=torch.cat(masks),
        clip_index=clip_of_window,
        labels=labels,
        label_names=label_names,
        norm_stats=stats,
        n_clips=len(usable),
        skipped=skipped,
    )


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise TrainingCancelled("training cancelled while loading the recordings")
