"""Recordings -> training windows: decode, fit normalisation on these clips, cut windows.

Log-mel front-end: two passes over the files; the first computes raw log-mels and fits
`NormStats` on them (the training clips only, never the evaluation clips), the second decodes
again and cuts normalised windows. Decoding twice keeps memory at the size of the windows
instead of holding every waveform (a 10 s clip at 16 kHz is 20 times larger than its log-mel).

Encoder front-end: one pass. Each clip's windows are embedded once (clips batched into the
encoder) or read from the embedding cache, the statistics are fitted on the raw embeddings, and
the same embeddings are then standardised: the encoder, by far the costliest step, runs once
per clip, and not at all for a clip the cache already holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from uvac.audio import (
    Audio,
    DatasetItem,
    EmbeddingCache,
    EmbeddingWindower,
    FeatureConfig,
    FeatureExtractor,
    NormStats,
    Windows,
    embed_items,
    fit_embedding_stats,
    fit_norm_stats,
    load_audio,
)
from uvac.errors import AudioError, DatasetError, RunCancelled

__all__ = [
    "HeldOutWindows",
    "TrainingWindows",
    "held_out_windows",
    "training_windows_from_embeddings",
    "windows_for_training",
]

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
    progress: Callable[[int, int], None] | None = None,
    embedding_cache: EmbeddingCache | None = None,
) -> TrainingWindows:
    """Windows of ``items`` normalised with statistics fitted on them.

    Undecodable files are skipped with a warning; `DatasetError` when none is usable;
    `RunCancelled` when ``should_stop()`` says so (asked before every file).
    ``progress(done, total)`` is called after each file of the encoding pass (encoder
    front-ends; the log-mel passes are quick). With an encoder front-end, the embeddings are
    read through ``embedding_cache`` (`uvac.audio.embed_items`).
    """
    if feature_config.uses_encoder:
        return _embedding_windows_for_training(
            items,
            feature_config=feature_config,
            should_stop=should_stop,
            progress=progress,
            embedding_cache=embedding_cache,
        )
    extractor = FeatureExtractor(feature_config)
    log_mels: list[Tensor] = []
    usable: list[DatasetItem] = []
    skipped: list[dict[str, str]] = []
    for item, audio in _decoded(items, feature_config, should_stop, skipped):
        if audio is not None:
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
    return _training_windows(
        usable,
        features=torch.cat(features),
        mask=torch.cat(masks),
        clip_index=torch.cat(clip_index),
        stats=stats,
        skipped=skipped,
    )


def _embedding_windows_for_training(
    items: Sequence[DatasetItem],
    *,
    feature_config: FeatureConfig,
    should_stop: Callable[[], bool] | None,
    progress: Callable[[int, int], None] | None,
    embedding_cache: EmbeddingCache | None,
) -> TrainingWindows:
    raw: list[Tensor] = []  # each usable clip's raw embeddings (W_i, 1, 1, D)
    usable: list[DatasetItem] = []
    skipped: list[dict[str, str]] = []
    embedded = embed_items(
        items,
        embedder=EmbeddingWindower(feature_config),
        cache=embedding_cache,
        should_stop=should_stop,
        progress=progress,
    )
    for result in embedded:
        if result.windows is None:
            skipped.append({"path": str(result.item.path), "reason": str(result.error)})
            continue
        raw.append(result.windows.features)
        usable.append(result.item)
    if not usable:
        raise DatasetError(f"none of the {len(items)} recordings could be decoded")
    return training_windows_from_embeddings(usable, raw, skipped=skipped)


def training_windows_from_embeddings(
    items: Sequence[DatasetItem],
    embeddings: Sequence[Tensor],
    *,
    skipped: list[dict[str, str]] | None = None,
) -> TrainingWindows:
    """Training windows from each clip's raw encoder embeddings ``(W_i, 1, 1, D)`` (one
    tensor per item, in order): statistics fitted on them, then standardised. For studies
    that embed a data set once and train many models on it."""
    features = torch.cat(list(embeddings))  # (N, 1, 1, D)
    clip_index = torch.cat(
        [
            torch.full((clip.shape[0],), index, dtype=torch.int64)
            for index, clip in enumerate(embeddings)
        ]
    )
    stats = fit_embedding_stats(features[:, 0, 0, :])
    return _training_windows(
        items,
        features=EmbeddingWindower.standardise_features(features, stats),
        mask=torch.ones(features.shape[0], 1),
        clip_index=clip_index,
        stats=stats,
        skipped=skipped or [],
    )


def _training_windows(
    usable: Sequence[DatasetItem],
    *,
    features: Tensor,
    mask: Tensor,
    clip_index: Tensor,
    stats: NormStats,
    skipped: list[dict[str, str]],
) -> TrainingWindows:
    label_names: list[str] | None = None
    labels: list[int] | None = None
    if all(item.label is not None for item in usable):
        label_names = sorted({str(item.label) for item in usable})
        clip_labels = [label_names.index(str(item.label)) for item in usable]
        labels = [clip_labels[i] for i in clip_index.tolist()]
    return TrainingWindows(
        features=features,
        mask=mask,
        clip_index=clip_index,
        labels=labels,
        label_names=label_names,
        norm_stats=stats,
        n_clips=len(usable),
        skipped=skipped,
    )


@dataclass(frozen=True)
class HeldOutWindows:
    """Windows of recordings kept out of training, normalised with the training statistics;
    the trainer only scores them."""

    features: Tensor  # (N, 1, T, M)
    mask: Tensor  # (N, T)
    labels: list[int] | None  # (N,) label id per window, in the training data's label ids


def held_out_windows(
    items: Sequence[DatasetItem],
    *,
    feature_config: FeatureConfig,
    training: TrainingWindows,
    should_stop: Callable[[], bool] | None = None,
    embedding_cache: EmbeddingCache | None = None,
) -> HeldOutWindows | None:
    """The windows of ``items`` cut and normalised exactly as ``training``'s; None when none
    decodes. Labels are kept only when every item's label is one training knows. An encoder's
    embeddings are read through ``embedding_cache``, as training's are."""
    names = training.label_names or []
    windows_of: list[tuple[DatasetItem, Windows]] = []
    if feature_config.uses_encoder:
        embedder = EmbeddingWindower(feature_config, training.norm_stats)
        for result in embed_items(
            items, embedder=embedder, cache=embedding_cache, should_stop=should_stop
        ):
            if result.windows is not None:
                windows_of.append((result.item, embedder.standardise(result.windows)))
    else:
        extractor = FeatureExtractor(feature_config, training.norm_stats)
        for item, audio in _decoded(items, feature_config, should_stop, skipped=[]):
            if audio is not None:
                windows_of.append((item, extractor.windows(audio)))
    if not windows_of:
        return None
    labels: list[int] = []
    every_label_known = True
    for item, windows in windows_of:
        if item.label is None or str(item.label) not in names:
            every_label_known = False
        else:
            labels.extend([names.index(str(item.label))] * len(windows))
    return HeldOutWindows(
        torch.cat([windows.features for _, windows in windows_of]),
        torch.cat([windows.mask for _, windows in windows_of]),
        labels if every_label_known else None,
    )


def _decoded(
    items: Sequence[DatasetItem],
    feature_config: FeatureConfig,
    should_stop: Callable[[], bool] | None,
    skipped: list[dict[str, str]],
) -> Iterator[tuple[DatasetItem, Audio | None]]:
    """Each item with its audio at the features' rate, or None when it does not decode (the
    reason is logged and added to ``skipped``); asks ``should_stop`` before every file."""
    for item in items:
        _check_stop(should_stop)
        try:
            audio = load_audio(item.path, sample_rate=feature_config.sample_rate)
        except AudioError as error:
            logger.warning("skipping %s: %s", item.path, error)
            skipped.append({"path": str(item.path), "reason": str(error)})
            audio = None
        yield item, audio


def _check_stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise RunCancelled("training cancelled while loading the recordings")
