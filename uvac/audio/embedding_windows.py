"""Time-context windows of embeddings: the feature pipeline when a pretrained encoder is the
front-end (``FeatureConfig.frontend`` names one of `uvac.audio.encoders.ENCODERS`).

    samples (N,) at the encoder's rate
      --> windows of ``window_seconds`` every ``window_hop_seconds`` (the last one aligned to
          the clip's end; a clip no longer than one window is one window of its own length;
          a tail of at most ``TAIL_SECONDS`` past a window is not given a window of its own,
          so a "5 s" clip a few samples long is one window, not two nearly equal ones)
      --> encoder --> one embedding (D,) per window                    raw_windows_batch()
      --> (x - mean) / std per dimension, statistics of the training windows   windows_batch()
      --> Windows: features (W, 1, 1, D), mask (W, 1) of ones, activity (W,)

The windows have the shape of a one-frame spectrogram so that training, inference and
evaluation treat both front-ends alike. ``activity`` is a window's share of real audio (a
short clip's only window has less than 1); it weights the window when a clip's pi is the mean
of its windows' pi. Normalisation is a standardisation only (no [0, 1] scaling and no
clamping): the networks for embeddings use a Gaussian likelihood (`uvac.models.mlp`). The
statistics are stored as `NormStats` with ``minimum = 0`` and ``maximum = 1``, for which its
scaling is exactly the z-score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from uvac.audio.decoding import Audio
from uvac.audio.encoders import Encoder, WindowStart, load_encoder
from uvac.audio.feature_config import FeatureConfig
from uvac.audio.windows import NormStats, Windows

__all__ = ["EmbeddingWindower", "fit_embedding_stats"]

_MIN_STD = 1e-6  # a dimension that never varies in training is left unscaled
TAIL_SECONDS = 0.1  # audio past the last window that may stay out of the windows


def fit_embedding_stats(embeddings: Tensor) -> NormStats:
    """Per-dimension mean and standard deviation of training embeddings ``(N, D)``."""
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ValueError(f"need embeddings of shape (N >= 1, D), got {tuple(embeddings.shape)}")
    values = embeddings.to(torch.float64)
    mean = values.mean(dim=0)
    std = values.std(dim=0, correction=0)
    std = torch.where(std < _MIN_STD, torch.ones_like(std), std)
    return NormStats(mean=mean.float(), std=std.float(), minimum=0.0, maximum=1.0)


class EmbeddingWindower:
    """Audio -> standardised embedding windows, for one config and its statistics."""

    def __init__(self, config: FeatureConfig, stats: NormStats | None = None) -> None:
        if not config.uses_encoder:
            raise ValueError("EmbeddingWindower needs a config whose frontend is an encoder")
        self.config = config
        self.stats = stats
        self.encoder: Encoder = load_encoder(config.frontend)
        self._window_samples = round(config.window_seconds * config.sample_rate)
        self._hop_samples = max(1, round(config.window_hop_seconds * config.sample_rate))
        self._tail_samples = round(TAIL_SECONDS * config.sample_rate)

    def cache_settings(self) -> dict[str, Any]:
        """Everything besides the recording that decides its raw embeddings: the encoder's
        identity and precision, and how windows are cut (`uvac.audio.embedding_cache`)."""
        identity = self.encoder.identity.to_dict()
        identity.pop("licence", None)
        return {
            "encoder": identity,
            "bf16": bool(getattr(self.encoder, "bf16_autocast", False)),
            "sample_rate": self.config.sample_rate,
            "window_samples": self._window_samples,
            "hop_samples": self._hop_samples,
            "tail_samples": self._tail_samples,
        }

    def raw_windows_batch(
        self, audios: Sequence[Audio], *, started: Sequence[WindowStart | None] | None = None
    ) -> tuple[Windows, list[slice]]:
        """Every window of every clip with its raw embedding, one encoder call for all;
        ``started`` (one per clip): the encoder's start on each clip's first window
        (`Encoder.start_window`), or None."""
        if not audios:
            raise ValueError("windows_batch needs at least one clip")
        if started is not None and len(started) != len(audios):
            raise ValueError(f"{len(started)} starts for {len(audios)} clips")
        pieces: list[Tensor] = []
        starts: list[WindowStart | None] = []
        starts_s: list[float] = []
        ends_s: list[float] = []
        activity: list[float] = []
        slices: list[slice] = []
        for clip_index, audio in enumerate(audios):
            if audio.sample_rate != self.config.sample_rate:
                raise ValueError(
                    f"audio is at {audio.sample_rate} Hz, the {self.config.frontend} expects "
                    f"{self.config.sample_rate} Hz"
                )
            first = len(pieces)
            samples = torch.from_numpy(audio.samples)
            for start in self.window_starts(samples.shape[0]):
                piece = samples[start : start + self._window_samples]
                pieces.append(piece)
                starts.append(started[clip_index] if started and start == 0 else None)
                starts_s.append(start / audio.sample_rate)
                ends_s.append(min(audio.duration_s, (start + piece.shape[0]) / audio.sample_rate))
                activity.append(min(1.0, piece.shape[0] / self._window_samples))
            slices.append(slice(first, len(pieces)))
        if any(start is not None for start in starts):
            embeddings = self.encoder.embed_started(pieces, starts)  # (W, D)
        else:
            embeddings = self.encoder.embed(pieces)
        windows = Windows(
            features=embeddings[:, None, None, :],  # (W, 1, 1, D)
            mask=torch.ones(len(pieces), 1),
            starts_s=starts_s,
            ends_s=ends_s,
            activity=torch.tensor(activity, dtype=torch.float32),
        )
        return windows, slices

    def window_count(self, audio: Audio) -> int:
        """How many windows ``audio`` has (what `windows_batch` would give it)."""
        return len(self.window_starts(audio.samples.shape[0]))

    def windows_at(self, audio: Audio, first: int, stop: int) -> Windows:
        """Windows ``first`` to ``stop - 1`` of one clip, standardised: the same as those
        rows of `windows_batch([audio])`, with one encoder call for these alone."""
        starts = self.window_starts(audio.samples.shape[0])[first:stop]
        samples = torch.from_numpy(audio.samples)
        pieces = [samples[start : start + self._window_samples] for start in starts]
        embeddings = self.encoder.embed(pieces)  # (W, D)
        raw = Windows(
            features=embeddings[:, None, None, :],  # (W, 1, 1, D)
            mask=torch.ones(len(pieces), 1),
            starts_s=[start / audio.sample_rate for start in starts],
            ends_s=[
                min(audio.duration_s, (start + piece.shape[0]) / audio.sample_rate)
                for start, piece in zip(starts, pieces, strict=True)
            ],
            activity=torch.tensor(
                [min(1.0, piece.shape[0] / self._window_samples) for piece in pieces],
                dtype=torch.float32,
            ),
        )
        return self.standardise(raw)

    def windows_batch(
        self, audios: Sequence[Audio], *, started: Sequence[WindowStart | None] | None = None
    ) -> tuple[Windows, list[slice]]:
        """`raw_windows_batch`, standardised with the training statistics."""
        raw, slices = self.raw_windows_batch(audios, started=started)
        return self.standardise(raw), slices

    @staticmethod
    def standardise_features(features: Tensor, stats: NormStats) -> Tensor:
        """``(W, 1, 1, D)`` raw embeddings -> z-scores."""
        return (features - stats.mean) / stats.std

    def standardise(self, raw: Windows) -> Windows:
        if self.stats is None:
            raise RuntimeError("this EmbeddingWindower has no normalisation statistics")
        return Windows(
            features=self.standardise_features(raw.features, self.stats),
            mask=raw.mask,
            starts_s=raw.starts_s,
            ends_s=raw.ends_s,
            activity=raw.activity,
        )

    @property
    def window_samples(self) -> int:
        return self._window_samples

    @property
    def hop_samples(self) -> int:
        return self._hop_samples

    def window_starts(self, n_samples: int) -> list[int]:
        """First sample of every window of a clip of ``n_samples`` (module docstring)."""
        if n_samples <= self._window_samples + self._tail_samples:
            return [0]
        last = n_samples - self._window_samples
        starts = list(range(0, last + 1, self._hop_samples))
        if last - starts[-1] > self._tail_samples:
            starts.append(last)
        return starts
