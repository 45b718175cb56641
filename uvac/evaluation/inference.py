"""Cluster recordings with a trained model: audio -> windows -> pi per window -> pi per clip.

`Clusterer.cluster_batch` cuts every clip into time-context windows with the model's own
feature configuration and normalisation statistics, runs all windows of all clips through the
model's fast path (h only for Cat. UVAC) in one forward pass, and aggregates per clip:

    clip pi = sum_w activity_w * pi_w / sum_w activity_w

where ``activity_w`` is window w's share of active, unpadded frames (`Windows.activity`), so a
zero-padded tail window counts for the sound it holds. A clip whose windows are all silent gets
the plain mean. The per-window results are kept as the clip's timeline.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from uvac.audio import Audio, EmbeddedItem, FeatureExtractor, Windows, concatenate_windows
from uvac.device import resolve_device
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


@dataclass(frozen=True)
class ClipResult:
    """One clip: its pi, sharp assignment and the timeline of its windows."""

    probabilities: list[float]  # K, sums to 1
    assignment: int  # argmax of probabilities
    confidence: float  # probabilities[assignment]
    duration_s: float
    windows: list[WindowResult]


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
        self, trained: TrainedModel, *, device: str = "cpu", bf16_autocast: bool = False
    ) -> None:
        self.trained = trained
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

    def cluster_batch(self, audios: Sequence[Audio]) -> list[ClipResult]:
        """Cluster clips (at `sample_rate`); all their windows go through one forward pass."""
        if not audios:
            return []
        windows, slices = self.extractor.windows_batch(audios)
        return self.cluster_windows(windows, slices, [audio.duration_s for audio in audios])

    def cluster_embedded(self, embedded: Sequence[EmbeddedItem]) -> list[ClipResult]:
        """Cluster clips whose raw embeddings are known (`uvac.audio.embed_items`, read
        through the embedding cache): standardised with the model's statistics, one pass."""
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
        return self.cluster_windows(windows, slices, [clip.duration_s for clip in embedded])

    def cluster_windows(
        self, windows: Windows, slices: Sequence[slice], durations_s: Sequence[float]
    ) -> list[ClipResult]:
        """Cluster clips whose windows are cut and normalised already (`cluster_batch` from
        there on): each clip's slice of ``windows`` and its duration."""
        probabilities = self.cluster_features(windows.features, windows.mask)  # (W_all, K)
        results = []
        for duration_s, clip in zip(durations_s, slices, strict=True):
            clip_probabilities = probabilities[clip]  # (W, K)
            pooled = aggregate_windows(clip_probabilities, windows.activity[clip])  # (K,)
            assignment = int(pooled.argmax())
            timeline = [
                WindowResult(
                    start_s=windows.starts_s[index],
                    end_s=windows.ends_s[index],
                    probabilities=window_pi.tolist(),
                    assignment=int(window_pi.argmax()),
                )
                for index, window_pi in zip(
                    range(clip.start, clip.stop), clip_probabilities, strict=True
                )
            ]
            results.append(
                ClipResult(
                    probabilities=pooled.tolist(),
                    assignment=assignment,
                    confidence=float(pooled[assignment]),
                    duration_s=duration_s,
                    windows=timeline,
                )
            )
        return results
