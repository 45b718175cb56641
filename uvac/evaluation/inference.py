"""Cluster recordings with a trained model: audio -> windows -> pi per window -> pi per clip.

`Clusterer.cluster_batch` cuts every clip into time-context windows with the model's own
feature configuration and normalisation statistics, runs all windows of all clips through the
model's fast path (h only for Cat. UVAC) in one forward pass, and aggregates per clip:

    clip pi = sum_w activity_w * pi_w / sum_w activity_w

where ``activity_w`` is window w's share of active, unpadded frames (`Windows.activity`), so a
zero-padded tail window counts for the sound it holds. A clip whose windows are all silent gets
the plain mean. The per-window results are kept as the clip's timeline.

`Clusterer.cluster_in_steps` gives the same result for one clip as a generator that does a
bounded amount of work (``windows_per_step`` windows) per step, so that a server can run
other requests between the steps of a long recording instead of behind all of it.

Beside pi, every window and clip says what is in the sound: its level (RMS dBFS) and whether
it is digital silence (`uvac.audio.level`), the novelty of each window under the model's score
(`uvac.evaluation.novelty`; None for a model saved without one) and, when the clusterer was
built with ``detect_speech``, the share of it that holds speech (`uvac.audio.speech_activity`).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from uvac.audio import (
    Audio,
    EmbeddedItem,
    FeatureExtractor,
    Level,
    SpeechDetector,
    Windows,
    WindowStart,
    concatenate_windows,
    level_of,
    load_speech_detector,
)
from uvac.device import resolve_device
from uvac.errors import EncoderUnavailableError
from uvac.evaluation.novelty import window_novelty
from uvac.training import TrainedModel

__all__ = ["ClipResult", "Clusterer", "WindowResult", "aggregate_windows"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowResult:
    """One time-context window of a clip."""

    start_s: float
    end_s: float
    probabilities: list[float]  # K, sums to 1
    assignment: int
    activity: float = 1.0  # share of the window that is the clip's audio, not padding
    level_dbfs: float | None = None
    silence: bool | None = None
    speech: float | None = None  # share holding speech; None unless speech is detected
    novelty_score: float | None = None  # the raw score (`uvac.novelty.NoveltyScore`)
    novelty: float | None = None  # calibrated, in [0, 1]


@dataclass(frozen=True)
class ClipResult:
    """One clip: its pi, sharp assignment and the timeline of its windows."""

    probabilities: list[float]  # K, sums to 1
    assignment: int  # argmax of probabilities
    confidence: float  # probabilities[assignment]
    duration_s: float
    windows: list[WindowResult]
    level_dbfs: float | None = None
    silence: bool | None = None
    speech: float | None = None


def aggregate_windows(probabilities: Tensor, activity: Tensor) -> Tensor:
    """Activity-weighted mean of window pi: ``(W, K)`` and ``(W,)`` -> ``(K,)``, sums to 1."""
    weights = activity.to(probabilities.dtype)
    if float(weights.sum()) <= 0.0:  # every window silent: plain mean
        weights = torch.ones_like(weights)
    pooled = (probabilities * weights[:, None]).sum(dim=0) / weights.sum()  # (K,)
    return pooled / pooled.sum()  # exact normalisation against rounding


class Clusterer:
    """Serves one trained model. Thread-safe for concurrent `cluster_batch` calls (the model
    is only read, in eval mode, under `torch.inference_mode`)."""

    def __init__(
        self,
        trained: TrainedModel,
        *,
        device: str = "cpu",
        bf16_autocast: bool = False,
        detect_speech: bool = False,
    ) -> None:
        self.trained = trained
        self.speech_detector: SpeechDetector | None = None
        if detect_speech:
            try:
                self.speech_detector = load_speech_detector()
            except EncoderUnavailableError as error:  # answer without speech, not fail
                logger.warning("speech is not detected: %s", error)
        self.device = resolve_device(device)
        self.bf16_autocast = bf16_autocast
        self.model = trained.model.to(self.device).eval()
        self.extractor = FeatureExtractor(trained.feature_config, trained.norm_stats)

    @property
    def n_clusters(self) -> int:
        return self.model.n_clusters

    @property
    def sample_rate(self) -> int:
        """The rate `cluster_batch` expects its audio at (load it with this rate)."""
        return self.trained.feature_config.sample_rate

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        with (
            torch.inference_mode(),
            torch.autocast(
                device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16_autocast
            ),
        ):
            yield

    def cluster_features(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        """pi of feature windows ``(B, 1, T, M)`` (mask ``(B, T)``) -> ``(B, K)`` on the CPU."""
        with self._inference():
            x = features.to(self.device, torch.float32)
            m = mask.to(self.device, torch.float32) if mask is not None else None
            probabilities = self.model.cluster_probabilities(x, m)  # (B, K)
        return probabilities.float().cpu()

    def start_window(self, heard: Audio) -> Generator[None, None, WindowStart | None]:
        """Begin a window's embedding on its first samples ``heard`` (at `sample_rate`), in
        steps, for `cluster_batch` to finish once the window is whole (``started``); it gives
        None when the front-end cannot start early (`FeatureExtractor.start_window`)."""
        return self.extractor.start_window(heard)

    @property
    def starts_early(self) -> bool:
        """Whether `start_window` can begin a window (the front-end's encoder can)."""
        return self.extractor.starts_early

    def start_holds(self, heard: Audio, later: np.ndarray) -> bool:
        """Whether a `start_window` on ``heard`` can still be finished once the window's
        ``later`` samples have arrived (`FeatureExtractor.start_holds`)."""
        return self.extractor.start_holds(heard, later)

    def cluster_batch(
        self,
        audios: Sequence[Audio],
        *,
        speech: Sequence[bool] | None = None,
        started: Sequence[WindowStart | None] | None = None,
    ) -> list[ClipResult]:
        """Cluster clips (at `sample_rate`); all their windows go through one forward pass.

        ``speech`` says, clip by clip, whether to detect its speech (default: every clip, when
        the clusterer detects speech at all). A caller that never reads the speech fields
        (a live stream that did not ask for them) leaves them out: the detector costs a good
        share of the encoder's time. ``started``, clip by clip: the `start_window` of the
        clip's first window, or None (a live stream's window, begun before it was whole).
        """
        if not audios:
            return []
        wanted = [True] * len(audios) if speech is None else list(speech)
        if len(wanted) != len(audios):
            raise ValueError(f"speech has {len(wanted)} flags for {len(audios)} clips")
        windows, slices = self.extractor.windows_batch(audios, started=started)
        probabilities = self.cluster_features(windows.features, windows.mask)  # (W_all, K)
        novelty = window_novelty(self.trained, windows)
        chosen = [index for index, detect in enumerate(wanted) if detect]
        found = self._speech_many(
            [audios[index] for index in chosen], windows, [slices[index] for index in chosen]
        )
        shares: list[list[float] | None] = [None] * len(audios)
        for index, clip_shares in zip(chosen, found, strict=True):
            shares[index] = clip_shares
        return [
            self._clip_result(audio, windows, clip, probabilities, novelty, speech=clip_shares)
            for audio, clip, clip_shares in zip(audios, slices, shares, strict=True)
        ]

    def cluster_embedded(
        self, embedded: Sequence[EmbeddedItem], *, novelty: bool = True
    ) -> list[ClipResult]:
        """Cluster clips whose raw embeddings are known (`uvac.audio.embed_items`, read
        through the embedding cache): standardised with the model's statistics, one pass.
        Without the audio, the answers carry no level and no speech; with ``novelty`` False,
        no novelty either (a caller that needs only pi spares the score's products)."""
        embedder = self.extractor.embedder
        if embedder is None:
            raise ValueError("cluster_embedded needs a model on an encoder front-end")
        if not embedded:
            return []
        parts = []
        for clip in embedded:
            if clip.windows is None:
                raise ValueError(f"{clip.item.relpath} has no embeddings: {clip.error}")
            parts.append(embedder.standardise(clip.windows))
        windows, slices = concatenate_windows(parts)
        durations = [clip.duration_s for clip in embedded]
        return self.cluster_windows(windows, slices, durations, novelty=novelty)

    def cluster_windows(
        self,
        windows: Windows,
        slices: Sequence[slice],
        durations_s: Sequence[float],
        *,
        novelty: bool = True,
    ) -> list[ClipResult]:
        """Cluster clips whose windows are cut and normalised already: each clip's slice of
        ``windows`` and its duration (no audio: no level and no speech; with ``novelty``
        False, no novelty)."""
        probabilities = self.cluster_features(windows.features, windows.mask)  # (W_all, K)
        scored = window_novelty(self.trained, windows) if novelty else None
        return [
            self._clip_result(None, windows, clip, probabilities, scored, duration_s=duration_s)
            for duration_s, clip in zip(durations_s, slices, strict=True)
        ]

    def cluster_in_steps(
        self, audio: Audio, *, windows_per_step: int
    ) -> Generator[None, None, ClipResult]:
        """`cluster_batch([audio])[0]`, computed ``windows_per_step`` windows per step.

        Each ``next()`` does one step; the result is the generator's return value. With an
        encoder front-end a step embeds and clusters its windows only; with log-mel the
        clip's features are computed in the first step (cheap next to the network).
        """
        if windows_per_step < 1:
            raise ValueError("windows_per_step must be at least 1")
        embedder = self.extractor.embedder
        parts: list[Windows] = []
        pieces: list[Tensor] = []
        if embedder is not None:
            total = embedder.window_count(audio)
            for first in range(0, total, windows_per_step):
                part = embedder.windows_at(audio, first, first + windows_per_step)
                parts.append(part)
                pieces.append(self.cluster_features(part.features, part.mask))
                yield
        else:
            whole = self.extractor.windows(audio)
            parts.append(whole)
            yield
            for first in range(0, len(whole), windows_per_step):
                stop = first + windows_per_step
                pieces.append(
                    self.cluster_features(whole.features[first:stop], whole.mask[first:stop])
                )
                yield
        windows = Windows(
            features=torch.cat([part.features for part in parts]),
            mask=torch.cat([part.mask for part in parts]),
            starts_s=[start for part in parts for start in part.starts_s],
            ends_s=[end for part in parts for end in part.ends_s],
            activity=torch.cat([part.activity for part in parts]),
        )
        novelty = window_novelty(self.trained, windows)
        clip = slice(0, len(windows))
        (speech,) = self._speech_many([audio], windows, [clip])
        return self._clip_result(audio, windows, clip, torch.cat(pieces), novelty, speech=speech)

    def _clip_result(
        self,
        audio: Audio | None,
        windows: Windows,
        clip: slice,
        probabilities: Tensor,
        novelty: tuple[Tensor, Tensor] | None,
        *,
        duration_s: float | None = None,
        speech: list[float] | None = None,
    ) -> ClipResult:
        """The result of the clip whose windows are ``clip`` of ``windows`` (pi ``(W_all, K)``,
        novelty per window or None): pi pooled, its timeline, novelty and, with its ``audio``,
        level (``duration_s`` stands in for a clip given without audio); ``speech``: the
        shares `_speech_many` found for it (per window, then the whole clip), or None."""
        clip_probabilities = probabilities[clip]  # (W, K)
        pooled = aggregate_windows(clip_probabilities, windows.activity[clip])  # (K,)
        assignment = int(pooled.argmax())
        indices = range(clip.start, clip.stop)
        spans = _window_spans(windows, clip)
        duration = audio.duration_s if audio is not None else float(duration_s or 0.0)
        levels: list[Level | None] = (
            [_span_level(audio, start, end) for start, end in spans]
            if audio is not None
            else [None] * len(spans)
        )
        timeline = [
            WindowResult(
                start_s=windows.starts_s[index],
                end_s=windows.ends_s[index],
                probabilities=window_pi.tolist(),
                assignment=int(window_pi.argmax()),
                activity=float(windows.activity[index]),
                level_dbfs=level.dbfs if level is not None else None,
                silence=level.silence if level is not None else None,
                speech=speech[position] if speech else None,
                novelty_score=_finite(novelty[0][index]) if novelty else None,
                novelty=_rounded(novelty, index),
            )
            for position, (index, window_pi, level) in enumerate(
                zip(indices, clip_probabilities, levels, strict=True)
            )
        ]
        whole = level_of(audio.samples) if audio is not None else None
        return ClipResult(
            probabilities=pooled.tolist(),
            assignment=assignment,
            confidence=float(pooled[assignment]),
            duration_s=duration,
            windows=timeline,
            level_dbfs=whole.dbfs if whole is not None else None,
            silence=whole.silence if whole is not None else None,
            speech=speech[-1] if speech else None,
        )

    def _speech_many(
        self, audios: Sequence[Audio], windows: Windows, slices: Sequence[slice]
    ) -> list[list[float] | None]:
        """Each clip's speech share per window, then of the whole clip (None per clip without
        a detector); the clips' detector passes run as one batch."""
        if self.speech_detector is None:
            return [None] * len(audios)
        spans = [
            [*_window_spans(windows, clip), (0.0, audio.duration_s)]
            for audio, clip in zip(audios, slices, strict=True)
        ]
        shares = self.speech_detector.speech_shares_many(list(zip(audios, spans, strict=True)))
        return list(shares)


def _window_spans(windows: Windows, clip: slice) -> list[tuple[float, float]]:
    """(start_s, end_s) of each window in ``clip`` of ``windows``."""
    return [(windows.starts_s[i], windows.ends_s[i]) for i in range(clip.start, clip.stop)]


def _finite(value: Tensor) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _rounded(novelty: tuple[Tensor, Tensor] | None, index: int) -> float | None:
    """A window's calibrated novelty, None without a score or without a finite one."""
    if novelty is None or _finite(novelty[0][index]) is None:
        return None
    return round(float(novelty[1][index]), 4)


def _span_level(audio: Audio, start_s: float, end_s: float) -> Level:
    start = round(start_s * audio.sample_rate)
    end = max(start + 1, round(end_s * audio.sample_rate))
    return level_of(audio.samples[start:end])
