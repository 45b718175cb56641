"""The windows a live stream decides on: the last ``window_samples`` samples, every
``hop_samples`` samples once the first window is full.

They are the windows `FeatureExtractor.windows` cuts from a recording of the same audio (its
starts every hop, each window the same length), less the last window it aligns to a
recording's end, which a live stream never has: an encoder window is ``window_seconds`` of
samples; a log-mel window is the samples of its ``window_frames`` frames (the framing is not
centred, so a frame never reads past its window). A window cut out and clustered on its own
gives the pi the recording's timeline gives it, unless the features depend on the whole clip:
the options `streaming_obstacles` names make a clip's windows look at sound a live stream has
not heard yet (the loudest frame, the clip's mean, its active region).
"""

from __future__ import annotations

from dataclasses import dataclass

from uvac.audio.feature_config import FeatureConfig

__all__ = ["LiveWindows", "streaming_obstacles"]


@dataclass(frozen=True)
class LiveWindows:
    """Where a live stream's decisions fall, in samples at ``sample_rate``."""

    sample_rate: int
    window_samples: int
    hop_samples: int

    @classmethod
    def of(cls, config: FeatureConfig) -> LiveWindows:
        if config.uses_encoder:
            window = round(config.window_seconds * config.sample_rate)
            hop = max(1, round(config.window_hop_seconds * config.sample_rate))
        else:
            window = config.n_fft + (config.window_frames - 1) * config.hop_length
            hop = config.window_hop_frames * config.hop_length
        return cls(sample_rate=config.sample_rate, window_samples=window, hop_samples=hop)

    @property
    def window_s(self) -> float:
        return self.window_samples / self.sample_rate

    @property
    def hop_s(self) -> float:
        return self.hop_samples / self.sample_rate

    def decision_starts(self, n_samples: int) -> range:
        """First sample of every decision in ``n_samples`` of audio."""
        return range(0, n_samples - self.window_samples + 1, self.hop_samples)


def streaming_obstacles(config: FeatureConfig) -> list[str]:
    """Why a live stream cannot give this configuration's windows exactly (empty: it can)."""
    if config.uses_encoder:
        return []
    reasons = []
    for option, value in (
        ("utterance_norm", config.utterance_norm or None),
        ("activity_threshold_db", config.activity_threshold_db),
        ("time_fit", config.time_fit or None),
    ):
        if value is not None:
            reasons.append(f"its features use {option}={value!r}, which needs the whole clip")
    return reasons
