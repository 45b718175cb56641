"""The novelty section of an evaluation: a model run over a data set it should know and,
optionally, one known to be foreign (an evaluation's ``unknown_dataset_id``). It reports the
score's distribution on the held-out training windows with the threshold, the share of each
set's clips flagged unknown, and AUROC and FPR at 95 % TPR between the two sets.
`unknown_share` is that flagged share alone: what a training job records as a version's
held-out ``novelty_rate``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from uvac.audio import (
    Audio,
    DatasetItem,
    EmbeddingCache,
    embed_items,
    level_of,
    load_audio,
)
from uvac.errors import AudioError, RunCancelled
from uvac.evaluation.inference import ClipResult, Clusterer
from uvac.evaluation.novelty import ClipVerdict, clip_verdict, separation
from uvac.training import TrainedModel

__all__ = ["novelty_evaluation", "unknown_share"]

logger = logging.getLogger(__name__)

_BATCH_CLIPS = 64


def _clip_verdicts(
    trained: TrainedModel,
    items: Sequence[DatasetItem],
    *,
    false_alarm_rate: float | None,
    progress: Callable[[int, int], None] | None,
    embedding_cache: EmbeddingCache | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[ClipVerdict]:
    clusterer = Clusterer(trained)
    embedder = clusterer.extractor.embedder
    # An encoder's embeddings come through the cache; the audio is still decoded (cheap next
    # to the encoder) for each window's digital silence.
    cached: dict[str, ClipResult] = {}
    if embedder is not None and embedding_cache is not None:
        embedded = [
            result
            for result in embed_items(items, embedder=embedder, cache=embedding_cache)
            if result.windows is not None
        ]
        for first in range(0, len(embedded), _BATCH_CLIPS):  # one pass per batch, not per clip
            if should_stop is not None and should_stop():
                raise RunCancelled("cancelled while deciding which recordings are unknown")
            batch = embedded[first : first + _BATCH_CLIPS]
            for one, result in zip(batch, clusterer.cluster_embedded(batch), strict=True):
                cached[one.item.relpath] = result
    verdicts = []
    for done, item in enumerate(items, start=1):
        if should_stop is not None and should_stop():
            raise RunCancelled("cancelled while deciding which recordings are unknown")
        try:
            audio = load_audio(item.path, sample_rate=clusterer.sample_rate)
        except AudioError as error:
            logger.warning("novelty: %s skipped (%s)", item.path, error)
            continue
        if item.relpath in cached:
            clip = cached[item.relpath]
            silence = [_silent(audio, window.start_s, window.end_s) for window in clip.windows]
        else:
            (clip,) = clusterer.cluster_batch([audio])
            silence = [bool(window.silence) for window in clip.windows]
        verdicts.append(
            clip_verdict(
                trained,
                raw=[window.novelty_score for window in clip.windows],
                activity=[window.activity for window in clip.windows],
                silence=silence,
                false_alarm_rate=false_alarm_rate,
            )
        )
        if progress is not None:
            progress(done, len(items))
    return verdicts


def _silent(audio: Audio, start_s: float, end_s: float) -> bool:
    start = round(start_s * audio.sample_rate)
    end = max(start + 1, round(end_s * audio.sample_rate))
    return level_of(audio.samples[start:end]).silence


def _flagged_share(verdicts: Sequence[ClipVerdict]) -> float | None:
    decided = [v.unknown for v in verdicts if v.unknown is not None]
    return round(sum(decided) / len(decided), 4) if decided else None


def unknown_share(
    trained: TrainedModel,
    items: Sequence[DatasetItem],
    *,
    false_alarm_rate: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    embedding_cache: EmbeddingCache | None = None,
) -> float | None:
    """The share of ``items`` the model answers as unknown, decided as `/v1/cluster` decides
    (`clip_verdict`, at ``false_alarm_rate``, default the model's own); None for a model
    without a score or when no recording has a verdict (all silent or undecodable). An
    encoder's embeddings are read through ``embedding_cache``."""
    if trained.novelty is None:
        return None
    verdicts = _clip_verdicts(
        trained,
        items,
        false_alarm_rate=false_alarm_rate,
        progress=None,
        embedding_cache=embedding_cache,
        should_stop=should_stop,
    )
    return _flagged_share(verdicts)


def novelty_evaluation(
    trained: TrainedModel,
    known: Sequence[DatasetItem],
    unknown: Sequence[DatasetItem] = (),
    *,
    false_alarm_rate: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    embedding_cache: EmbeddingCache | None = None,
) -> dict[str, Any] | None:
    """The report's novelty section (JSON-able); None for a model without a score. An
    encoder's embeddings are read through ``embedding_cache``."""
    if trained.novelty is None:
        return None
    calibration = trained.novelty.calibration
    held_out = calibration.held_out_scores.numpy()
    section: dict[str, Any] = {
        "score": trained.novelty.score.to_dict(),
        "false_alarm_rate": false_alarm_rate or calibration.false_alarm_rate,
        "threshold": calibration.threshold(false_alarm_rate),
        "held_out_windows": int(held_out.shape[0]),
        "held_out_quantiles": {
            str(q): float(np.quantile(held_out, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
        },
    }
    total = len(known) + len(unknown)

    def step(offset: int) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda done, _: progress(offset + done, total))

    known_verdicts = _clip_verdicts(
        trained,
        known,
        false_alarm_rate=false_alarm_rate,
        progress=step(0),
        embedding_cache=embedding_cache,
    )
    section["known"] = {"clips": len(known_verdicts), "flagged": _flagged_share(known_verdicts)}
    if unknown:
        unknown_verdicts = _clip_verdicts(
            trained,
            unknown,
            false_alarm_rate=false_alarm_rate,
            progress=step(len(known)),
            embedding_cache=embedding_cache,
        )
        section["unknown"] = {
            "clips": len(unknown_verdicts),
            "flagged": _flagged_share(unknown_verdicts),
        }
        known_scores = [v.score for v in known_verdicts if v.score is not None]
        unknown_scores = [v.score for v in unknown_verdicts if v.score is not None]
        if known_scores and unknown_scores:
            section["separation"] = separation(known_scores, unknown_scores).to_dict()
    return section
