"""`FeatureConfig`: what a model's front-end does to audio, one frozen record.

It travels with every trained model (``model.json``) and is validated here; the pipeline it
configures is described in `uvac.audio.features` (log-mel) and `uvac.audio.embedding_windows`
(pretrained encoders).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from uvac.audio.encoders import ENCODERS

__all__ = ["FRONTENDS", "LOG_MEL", "MEL_MULTIPLE", "TIME_MULTIPLE", "FeatureConfig", "frame_count"]

# The networks halve the time and mel axes four times.
TIME_MULTIPLE = 16
MEL_MULTIPLE = 16

UTTERANCE_NORM_MODES = ("mean", "mean_variance")

LOG_MEL = "log-mel"
FRONTENDS = (LOG_MEL, *ENCODERS)


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that turns a waveform into network input; saved with every trained model.

    ``utterance_norm`` (False, True = ``"mean"``, or ``"mean_variance"``) normalises each
    clip per bin over its active frames before the global normalisation, removing speaker and
    channel colouring (a fixed spectral tilt is a constant offset in the log-mel domain).
    ``activity_threshold_db`` masks out frames quieter than the clip's loudest frame by more
    than that many dB, in addition to padding. ``cepstral_coefficients`` and ``time_fit`` /
    ``fit_frames`` are described in the module docstring. All are off by default (the paper's
    recipe).
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 960
    hop_length: int = 480
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None  # None: the Nyquist frequency
    window_seconds: float = 1.0
    window_hop_seconds: float = 0.5
    utterance_norm: bool | str = False  # False, True (= "mean"), "mean", "mean_variance"
    activity_threshold_db: float | None = None
    cepstral_coefficients: int | None = None  # None: log-mel features
    time_fit: bool = False
    fit_frames: int | None = None  # time_fit's window length; None: window_seconds' frames
    frontend: str = "log-mel"  # "log-mel", or a pretrained encoder (uvac.audio.encoders.ENCODERS)

    def __post_init__(self) -> None:
        self._check_frontend()
        for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.n_mels % MEL_MULTIPLE:
            raise ValueError(
                f"n_mels must be a multiple of {MEL_MULTIPLE} (the networks halve the mel axis "
                f"four times), got {self.n_mels}"
            )
        nyquist = self.sample_rate / 2
        if not 0 <= self.f_min < (self.f_max if self.f_max is not None else nyquist) <= nyquist:
            raise ValueError(
                f"need 0 <= f_min < f_max <= {nyquist:g} Hz, got f_min={self.f_min}, "
                f"f_max={self.f_max}"
            )
        if not self.window_seconds * self.sample_rate >= self.n_fft:
            raise ValueError(
                f"window_seconds ({self.window_seconds}) must hold at least one FFT "
                f"({self.n_fft / self.sample_rate:g} s)"
            )
        if not self.window_hop_seconds * self.sample_rate >= self.hop_length:
            raise ValueError(
                f"window_hop_seconds ({self.window_hop_seconds}) must be at least one frame hop "
                f"({self.hop_length / self.sample_rate:g} s)"
            )
        if not (
            isinstance(self.utterance_norm, bool) or self.utterance_norm in UTTERANCE_NORM_MODES
        ):
            raise ValueError(
                f"utterance_norm must be a bool or one of {', '.join(UTTERANCE_NORM_MODES)}, "
                f"got {self.utterance_norm!r}"
            )
        coefficients = self.cepstral_coefficients
        if coefficients is not None and (
            isinstance(coefficients, bool) or not isinstance(coefficients, int) or coefficients < 1
        ):
            raise ValueError(
                f"cepstral_coefficients must be a positive integer or None, got {coefficients!r}"
            )
        if not isinstance(self.time_fit, bool):
            raise ValueError(f"time_fit must be a bool, got {self.time_fit!r}")
        if self.fit_frames is not None and (
            isinstance(self.fit_frames, bool)
            or not isinstance(self.fit_frames, int)
            or self.fit_frames < 1
        ):
            raise ValueError(
                f"fit_frames must be a positive integer or None, got {self.fit_frames!r}"
            )
        if self.activity_threshold_db is not None and not self.activity_threshold_db > 0:
            raise ValueError(
                f"activity_threshold_db must be positive or None, got {self.activity_threshold_db}"
            )

    def _check_frontend(self) -> None:
        if self.frontend == LOG_MEL:
            return
        if self.frontend not in ENCODERS:
            known = ", ".join((LOG_MEL, *ENCODERS))
            raise ValueError(f"frontend must be one of {known}, got {self.frontend!r}")
        encoder = ENCODERS[self.frontend]
        if self.sample_rate != encoder.sample_rate:
            raise ValueError(
                f"the {self.frontend} takes audio at {encoder.sample_rate} Hz: set sample_rate "
                f"to {encoder.sample_rate}, got {self.sample_rate}"
            )
        longest = encoder.max_window_seconds
        if longest is not None and self.window_seconds > longest:
            raise ValueError(
                f"the {self.frontend} embeds windows of at most {longest:g} s, got "
                f"window_seconds={self.window_seconds}"
            )

    @property
    def uses_encoder(self) -> bool:
        """True when a pretrained encoder's embeddings are the features (not log-mels)."""
        return self.frontend != LOG_MEL

    @property
    def utterance_norm_mode(self) -> str | None:
        """None, ``"mean"`` or ``"mean_variance"``: ``utterance_norm`` spelled out."""
        if self.utterance_norm is True:
            return "mean"
        if self.utterance_norm is False:
            return None
        return str(self.utterance_norm)

    @property
    def feature_bins(self) -> int:
        """F, the values per frame the networks see: the encoder's embedding size, cepstral
        coefficients, else mel bins."""
        if self.uses_encoder:
            return ENCODERS[self.frontend].embedding_dim
        if self.cepstral_coefficients is not None:
            # c1..cC of an M-point DCT: at most M - 1 (so a preset's count survives a smaller
            # n_mels override)
            return min(self.cepstral_coefficients, self.n_mels - 1)
        return self.n_mels

    @property
    def span_frames(self) -> int:
        """Frames of the clip one window covers (``window_seconds`` of sound)."""
        return frame_count(round(self.window_seconds * self.sample_rate), self)

    @property
    def window_frames(self) -> int:
        """Frames of real audio in one full window: ``span_frames``, or with ``time_fit`` the
        frames every window is resampled to (``fit_frames``, else ``span_frames``); one
        embedding with an encoder."""
        if self.uses_encoder:
            return 1
        if self.time_fit and self.fit_frames is not None:
            return self.fit_frames
        return self.span_frames

    @property
    def frames_per_window(self) -> int:
        """T of the network input: ``window_frames`` rounded up to a multiple of 16 (one
        embedding with an encoder: the perceptrons pad nothing)."""
        if self.uses_encoder:
            return 1
        return math.ceil(self.window_frames / TIME_MULTIPLE) * TIME_MULTIPLE

    @property
    def window_hop_frames(self) -> int:
        """Frames between the starts of consecutive windows of a long clip."""
        return max(1, round(self.window_hop_seconds * self.sample_rate / self.hop_length))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(1, T, F): the shape of one window as the networks see it."""
        return (1, self.frames_per_window, self.feature_bins)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureConfig:
        """Rebuild from ``to_dict()`` output; unknown keys are an error, missing ones default."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown feature configuration keys: {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(**dict(data))


def frame_count(n_samples: int, config: FeatureConfig) -> int:
    return 1 + max(0, n_samples - config.n_fft) // config.hop_length
