"""Features: log-mel spectrograms, normalisation statistics and time-context windows.

This module is the ``frontend="log-mel"`` pipeline. With a pretrained encoder as the
front-end (``FeatureConfig.frontend``), `FeatureExtractor` hands the clip to
`uvac.embedding_windows.EmbeddingWindower` instead and the rest of this docstring does not
apply.

The pipeline for one clip, the same in training and at inference::

    samples (N,) --MelSpectrogram, log--> log-mel (T_clip, M)        log_mel()
      --> activity per frame                                         _prepare_clip()
          [optional: trim to the active region        (time_fit)]
          [optional: cepstra, DCT-II, c0 dropped  (cepstral_coefficients)]
          [optional: per-utterance mean (and variance) normalisation (utterance_norm)]
          [optional: resample the clip to one window  (time_fit)]
      --> (x - mean) / std per bin, then min-max to [0, 1], clamped  NormStats
      --> windows (W, 1, T, F) with a mask (W, T)                    FeatureExtractor.windows()

F, the feature bins the networks see (``FeatureConfig.feature_bins``), is ``n_mels`` for
log-mel features and ``cepstral_coefficients`` for cepstral ones.

Options beyond the paper, all off by default (the paper's recipe), chosen by the quality study
(``benchmarks/quality.py``, ``uvac.presets``):

- ``cepstral_coefficients=C``: the orthonormal DCT-II of each log-mel frame, c0 (overall
  level) dropped, c1..cC kept (at most ``n_mels - 1`` of them). Decorrelates the mel bins
  and separates the spectral envelope (what is said or what sounds) from level; with
  per-utterance normalisation it removes a speaker's or a channel's fixed colouring.
- ``utterance_norm``: ``True`` or ``"mean"`` subtracts the clip's per-bin mean over its active
  frames; ``"mean_variance"`` also divides by the clip's per-bin standard deviation (CMVN).
- ``time_fit``: the clip is trimmed to its active region (first to last frame within
  ``activity_threshold_db`` of the loudest; no trim without a threshold); a trimmed clip no
  longer than ``window_seconds`` is one window, linearly resampled over time to
  ``window_frames`` frames (``fit_frames``, else the frames of ``window_seconds``); a longer
  one is cut into ``window_seconds`` windows every ``window_hop_seconds`` as usual, each
  resampled the same way (so long recordings keep a timeline). Removes differences in speaking
  rate and in where the sound sits in the recording; meant for utterance-like clips (spoken
  words, sound events) up to ``window_seconds``. Every frame of a fitted window is real: the
  mask is all ones. Normalisation statistics are fitted on the trimmed clips' frames.

Framing is not centred (no reflection padding): frame t covers samples
[t * hop, t * hop + n_fft), so every frame is real audio and a 1 s window at the defaults is
exactly 32 frames. A clip shorter than one FFT is zero-padded to one frame. The samples after
the last full frame (less than one hop, 30 ms at the defaults) are not analysed.

Windows: ``window_frames`` frames cover ``window_seconds``; the network input has
``frames_per_window`` frames, that count rounded up to a multiple of 16 because the networks
halve time four times. Extra frames are padding: feature value 0 and mask 0.

- A clip no longer than one window gives one window, zero-padded, mask 0 on the padding.
- A longer clip gives windows every ``window_hop_seconds`` (rounded to whole frames); the last
  window is aligned to the clip's end, so every frame is in at least one window.

The mask is 1 on frames that are real and active audio: padding is always 0; with
``activity_threshold_db`` set, frames quieter than the clip's loudest frame by more than that
many dB are 0 as well (their feature values are kept). ``Windows.activity`` is each window's
share of active frames relative to ``window_frames`` (1.0 for a full window of sound); the
inference code weights window results by it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torchaudio

from uvac.audio import Audio
from uvac.encoders import ENCODERS

if TYPE_CHECKING:
    from uvac.embedding_windows import EmbeddingWindower

__all__ = [
    "FRONTENDS",
    "FeatureConfig",
    "FeatureExtractor",
    "NormStats",
    "Windows",
    "fit_norm_stats",
    "log_mel",
]

# The networks halve the time and mel axes four times.
TIME_MULTIPLE = 16
MEL_MULTIPLE = 16

# log(mel + LOG_OFFSET): keeps digital silence finite (log(1e-6) = -13.8).
LOG_OFFSET = 1e-6

# A per-mel standard deviation below this is a constant bin; it is left unscaled.
_MIN_STD = 1e-5

# A clip's per-bin spread below this (a constant bin) is not scaled up (utterance CMVN).
_UTTERANCE_MIN_STD = 1e-3

UTTERANCE_NORM_MODES = ("mean", "mean_variance")

LOG_MEL = "log-mel"
FRONTENDS = (LOG_MEL, *ENCODERS)

_DB_PER_NEPER_POWER = 10.0 / math.log(10.0)  # 10 * log10(p) = this * ln(p)


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
    frontend: str = "log-mel"  # "log-mel", or a pretrained encoder (uvac.encoders.ENCODERS)

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
        return _frame_count(round(self.window_seconds * self.sample_rate), self)

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


@dataclass(frozen=True)
class NormStats:
    """Training-set normalisation: per-mel mean and std, then the global min and max of the
    standardised values, so that ``((x - mean) / std - minimum) / (maximum - minimum)`` maps the
    training frames onto [0, 1]. Inference uses exactly these numbers and clamps to [0, 1]."""

    mean: torch.Tensor  # (F,) float32, F = FeatureConfig.feature_bins
    std: torch.Tensor  # (F,) float32, > 0
    minimum: float
    maximum: float

    TENSOR_KEYS = ("norm_stats.mean", "norm_stats.std", "norm_stats.minimum", "norm_stats.maximum")

    def __post_init__(self) -> None:
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape:
            raise ValueError(
                f"mean and std must be 1-D of equal length, got {tuple(self.mean.shape)} and "
                f"{tuple(self.std.shape)}"
            )
        if not (torch.isfinite(self.mean).all() and torch.isfinite(self.std).all()):
            raise ValueError("normalisation mean and std must be finite")
        if not bool((self.std > 0).all()):
            raise ValueError("normalisation std must be positive")
        if not (math.isfinite(self.minimum) and math.isfinite(self.maximum)):
            raise ValueError("normalisation minimum and maximum must be finite")
        if not self.maximum > self.minimum:
            raise ValueError(
                f"normalisation maximum ({self.maximum}) must exceed minimum ({self.minimum})"
            )

    @property
    def feature_bins(self) -> int:
        return int(self.mean.shape[0])

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors for a safetensors file, under keys prefixed ``norm_stats.``."""
        mean_key, std_key, minimum_key, maximum_key = self.TENSOR_KEYS
        return {
            mean_key: self.mean.detach().to(torch.float32).contiguous(),
            std_key: self.std.detach().to(torch.float32).contiguous(),
            minimum_key: torch.tensor([self.minimum], dtype=torch.float64),
            maximum_key: torch.tensor([self.maximum], dtype=torch.float64),
        }

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor]) -> NormStats:
        """Rebuild from ``to_tensors()`` output; other keys (model weights) are ignored."""
        missing = [key for key in cls.TENSOR_KEYS if key not in tensors]
        if missing:
            raise ValueError(f"normalisation statistics missing: {', '.join(missing)}")
        mean_key, std_key, minimum_key, maximum_key = cls.TENSOR_KEYS
        for key in (minimum_key, maximum_key):
            if tensors[key].numel() != 1:
                raise ValueError(
                    f"{key} must hold one value, got shape {tuple(tensors[key].shape)}"
                )
        return cls(
            mean=tensors[mean_key].detach().to(torch.float32).clone(),
            std=tensors[std_key].detach().to(torch.float32).clone(),
            minimum=float(tensors[minimum_key].item()),
            maximum=float(tensors[maximum_key].item()),
        )


@dataclass(frozen=True)
class Windows:
    """Time-context windows of one or more clips, ready for a network."""

    features: torch.Tensor  # (W, 1, T, M) float32 in [0, 1]; padding is 0
    mask: torch.Tensor  # (W, T) float32: 1 = real active audio, 0 = padding or inactive
    starts_s: list[float]  # W window starts in the clip, seconds
    ends_s: list[float]  # W window ends in the clip, seconds
    activity: torch.Tensor  # (W,) float32: active frames / window_frames, in [0, 1]

    def __len__(self) -> int:
        return int(self.features.shape[0])


def log_mel(samples: np.ndarray | torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Log-mel spectrogram (T, M) of mono ``samples`` at ``config.sample_rate``.

    Builds the transform on every call; code that runs per request keeps a
    ``FeatureExtractor``, which builds it once.
    """
    return _LogMel(config)(samples)


def fit_norm_stats(log_mels: Iterable[torch.Tensor], config: FeatureConfig) -> NormStats:
    """Normalisation statistics over all active frames of the training clips.

    ``log_mels`` are the clips' raw log-mels (T, M) as ``log_mel`` or
    ``FeatureExtractor.log_mel`` return them; the clip preparation (activity, per-utterance
    mean) is applied here exactly as at inference. One streaming pass in float64: the
    min and max of the standardised values follow from the per-mel min and max because
    standardising is increasing in each mel bin.
    """
    n_bins = config.feature_bins
    count = 0
    total = torch.zeros(n_bins, dtype=torch.float64)
    total_sq = torch.zeros(n_bins, dtype=torch.float64)
    low = torch.full((n_bins,), math.inf, dtype=torch.float64)
    high = torch.full((n_bins,), -math.inf, dtype=torch.float64)
    for clip_log_mel in log_mels:
        _check_log_mel(clip_log_mel, config)
        values, active = _prepare_clip(clip_log_mel, config)
        frames = values[active].to(torch.float64)  # (A, F)
        if frames.shape[0] == 0:
            continue
        count += frames.shape[0]
        total += frames.sum(dim=0)
        total_sq += frames.square().sum(dim=0)
        low = torch.minimum(low, frames.amin(dim=0))
        high = torch.maximum(high, frames.amax(dim=0))
    if count == 0:
        raise ValueError("cannot fit normalisation statistics: no active frames")
    mean = total / count
    variance = (total_sq / count - mean.square()).clamp_min(0.0)
    std = variance.sqrt()
    std = torch.where(std < _MIN_STD, torch.ones_like(std), std)
    minimum = float(((low - mean) / std).min())
    maximum = float(((high - mean) / std).max())
    if maximum - minimum < 1e-6:  # every frame identical: any positive range will do
        maximum = minimum + 1.0
    return NormStats(
        mean=mean.to(torch.float32), std=std.to(torch.float32), minimum=minimum, maximum=maximum
    )


class FeatureExtractor:
    """Turns ``Audio`` into normalised windows with one config and one set of statistics.

    ``stats`` may be None while the statistics are being fitted; only ``log_mel`` works then.
    The mel transform is built once here; the extractor is safe to share between threads.
    """

    def __init__(self, config: FeatureConfig, stats: NormStats | None = None) -> None:
        if stats is not None and stats.feature_bins != config.feature_bins:
            raise ValueError(
                f"normalisation statistics have {stats.feature_bins} feature bins (mel bins or "
                f"cepstral coefficients), the config gives {config.feature_bins}"
            )
        self.config = config
        self.stats = stats
        self.embedder: EmbeddingWindower | None = None
        if config.uses_encoder:
            # Imported here: that module builds on this one's Windows and NormStats.
            from uvac.embedding_windows import EmbeddingWindower

            self.embedder = EmbeddingWindower(config, stats)
            return
        self._log_mel = _LogMel(config)
        if stats is not None:
            # x_scaled = (x - mean) / std * scale - offset, folded into one multiply-add.
            scale = 1.0 / (stats.maximum - stats.minimum)
            self._gain = (scale / stats.std).to(torch.float32)  # (M,)
            self._bias = (-stats.mean * self._gain - stats.minimum * scale).to(torch.float32)

    def log_mel(self, audio: Audio) -> torch.Tensor:
        """Raw log-mel (T, M) of a clip, the input of ``fit_norm_stats``."""
        if self.embedder is not None:
            raise ValueError(f"the {self.config.frontend} front-end has no log-mel")
        self._check_rate(audio)
        return self._log_mel(audio.samples)

    def normalised(self, audio: Audio) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole clip normalised, (T_clip, M) in [0, 1], and its activity (T_clip,) bool."""
        values, active = _prepare_clip(self.log_mel(audio), self.config)
        return self._normalise(values), active

    def windows(self, audio: Audio) -> Windows:
        """One clip's windows (see the module docstring for the rules)."""
        return self.windows_batch([audio])[0]

    def windows_batch(self, audios: Sequence[Audio]) -> tuple[Windows, list[slice]]:
        """All windows of all clips in one ``Windows``, and each clip's slice of it."""
        if self.embedder is not None:
            return self.embedder.windows_batch(audios)
        if not audios:
            raise ValueError("windows_batch needs at least one clip")
        parts = [self._clip_windows(audio) for audio in audios]
        slices: list[slice] = []
        offset = 0
        for part in parts:
            slices.append(slice(offset, offset + len(part)))
            offset += len(part)
        if len(parts) == 1:
            return parts[0], slices
        windows = Windows(
            features=torch.cat([part.features for part in parts]),
            mask=torch.cat([part.mask for part in parts]),
            starts_s=[start for part in parts for start in part.starts_s],
            ends_s=[end for part in parts for end in part.ends_s],
            activity=torch.cat([part.activity for part in parts]),
        )
        return windows, slices

    def _clip_windows(self, audio: Audio) -> Windows:
        if self.config.time_fit:
            return self._fitted_windows(audio)
        config = self.config
        values, active = self.normalised(audio)  # (T_clip, M), (T_clip,)
        clip_frames = values.shape[0]
        window_frames = config.window_frames
        input_frames = config.frames_per_window
        if clip_frames <= window_frames:
            starts = [0]
            real_frames = clip_frames
            windowed_values = values.unsqueeze(0)  # (1, T_clip, M)
            windowed_active = active.unsqueeze(0)  # (1, T_clip)
        else:
            last_start = clip_frames - window_frames
            starts = list(range(0, last_start + 1, config.window_hop_frames))
            if starts[-1] != last_start:
                starts.append(last_start)
            real_frames = window_frames
            # (W, window_frames) frame indices of each window
            index = torch.tensor(starts).unsqueeze(1) + torch.arange(real_frames).unsqueeze(0)
            windowed_values = values[index]  # (W, window_frames, M)
            windowed_active = active[index]  # (W, window_frames)
        padding = input_frames - real_frames
        features = torch.nn.functional.pad(windowed_values, (0, 0, 0, padding))  # (W, T, M)
        mask = torch.nn.functional.pad(windowed_active.to(torch.float32), (0, padding))  # (W, T)
        activity = mask.sum(dim=1) / window_frames  # (W,)

        hop_s = config.hop_length / config.sample_rate
        fft_s = config.n_fft / config.sample_rate
        duration = audio.duration_s
        starts_s = [start * hop_s for start in starts]
        if clip_frames <= window_frames:
            ends_s = [duration]
        else:
            ends_s = [min(duration, (start + real_frames - 1) * hop_s + fft_s) for start in starts]
        return Windows(
            features=features.unsqueeze(1),  # (W, 1, T, M)
            mask=mask,
            starts_s=starts_s,
            ends_s=ends_s,
            activity=activity,
        )

    def _fitted_windows(self, audio: Audio) -> Windows:
        """time_fit: the trimmed clip cut into windows of ``span_frames`` (one window when it
        is no longer), each resampled to ``window_frames``; every frame is real (mask 1)."""
        config = self.config
        prepared, _, first = _prepare_clip_at(self.log_mel(audio), config)
        values = self._normalise(prepared)  # (T', F)
        clip_frames, span = values.shape[0], config.span_frames
        if clip_frames <= span:
            starts, lengths = [0], [clip_frames]
            fitted = _fit_time(values.unsqueeze(0), config.window_frames)  # (1, T_w, F)
        else:
            last_start = clip_frames - span
            starts = list(range(0, last_start + 1, config.window_hop_frames))
            if starts[-1] != last_start:
                starts.append(last_start)
            lengths = [span] * len(starts)
            index = torch.tensor(starts).unsqueeze(1) + torch.arange(span).unsqueeze(0)
            fitted = _fit_time(values[index], config.window_frames)  # (W, T_w, F)
        padding = config.frames_per_window - config.window_frames
        features = torch.nn.functional.pad(fitted, (0, 0, 0, padding))  # (W, T, F)
        mask = torch.zeros(len(starts), config.frames_per_window)
        mask[:, : config.window_frames] = 1.0  # (W, T)

        hop_s = config.hop_length / config.sample_rate
        fft_s = config.n_fft / config.sample_rate
        duration = audio.duration_s
        if len(starts) == 1:
            starts_s, ends_s = [0.0], [duration]
        else:
            starts_s = [(first + start) * hop_s for start in starts]
            ends_s = [
                min(duration, (first + start + length - 1) * hop_s + fft_s)
                for start, length in zip(starts, lengths, strict=True)
            ]
        return Windows(
            features=features.unsqueeze(1),  # (W, 1, T, F)
            mask=mask,
            starts_s=starts_s,
            ends_s=ends_s,
            activity=torch.ones(len(starts)),
        )

    def _normalise(self, values: torch.Tensor) -> torch.Tensor:
        if self.stats is None:
            raise RuntimeError("this FeatureExtractor has no normalisation statistics")
        # (T, M) * (M,) + (M,), clamped: inference clips may exceed the training range.
        return torch.addcmul(self._bias, values, self._gain).clamp_(0.0, 1.0)

    def _check_rate(self, audio: Audio) -> None:
        if audio.sample_rate != self.config.sample_rate:
            raise ValueError(
                f"audio is at {audio.sample_rate} Hz, the features expect "
                f"{self.config.sample_rate} Hz (load it with sample_rate={self.config.sample_rate})"
            )


class _LogMel:
    """Power mel spectrogram (Hann window, no centring) followed by log(mel + 1e-6).

    Numerically what ``torchaudio.transforms.MelSpectrogram(power=2, center=False)`` computes
    (a test holds it to that), with torchaudio's own mel filterbank, but calling ``torch.stft``
    directly: torchaudio's wrapper costs more than the transform itself on a 1 s clip.
    """

    def __init__(self, config: FeatureConfig) -> None:
        self._n_fft = config.n_fft
        self._hop_length = config.hop_length
        self._win_length = config.win_length
        self._window = torch.hann_window(config.win_length)  # (win_length,)
        filterbank = torchaudio.functional.melscale_fbanks(
            n_freqs=config.n_fft // 2 + 1,
            f_min=float(config.f_min),
            f_max=float(config.f_max if config.f_max is not None else config.sample_rate / 2),
            n_mels=config.n_mels,
            sample_rate=config.sample_rate,
        )  # (n_fft // 2 + 1, M)
        # FFT bins above the last one any mel filter touches (above f_max) only ever meet zero
        # weights: leaving them out of the power and the product changes nothing but the
        # time (with f_max = Nyquist / 2, half of both).
        touched = filterbank.abs().sum(dim=1).nonzero()  # (n, 1) indices of used bins
        used_bins = int(touched.max()) + 1 if touched.numel() else filterbank.shape[0]
        self._n_used_bins = used_bins
        self._filterbank = filterbank[:used_bins].contiguous()  # (F_used, M)

    def __call__(self, samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        waveform = torch.as_tensor(samples, dtype=torch.float32)
        if waveform.ndim != 1:
            raise ValueError(f"samples must be mono (N,), got shape {tuple(waveform.shape)}")
        if waveform.shape[0] < self._n_fft:  # shorter than one FFT: one zero-padded frame
            waveform = torch.nn.functional.pad(waveform, (0, self._n_fft - waveform.shape[0]))
        with torch.no_grad():
            spectrum = torch.stft(
                waveform,
                n_fft=self._n_fft,
                hop_length=self._hop_length,
                win_length=self._win_length,
                window=self._window,
                center=False,
                return_complex=True,
            )  # (F, T) complex
            spectrum = spectrum[: self._n_used_bins]  # (F_used, T)
            power = spectrum.real.square().addcmul_(spectrum.imag, spectrum.imag)  # (F_used, T)
            mel = torch.mm(power.T, self._filterbank)  # (T, M)
            return mel.add_(LOG_OFFSET).log_()


def _prepare_clip(
    clip_log_mel: torch.Tensor, config: FeatureConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-clip steps before global normalisation (see the module docstring): the prepared
    values (T', F) and their activity (T',) bool."""
    values, active, _ = _prepare_clip_at(clip_log_mel, config)
    return values, active


def _prepare_clip_at(
    clip_log_mel: torch.Tensor, config: FeatureConfig
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """`_prepare_clip`, plus the index of the clip's first kept frame (time_fit trims)."""
    if config.activity_threshold_db is None:
        active = torch.ones(clip_log_mel.shape[0], dtype=torch.bool)
    else:
        # frame power in dB from the log-mel itself, so fit_norm_stats needs no audio
        frame_db = torch.logsumexp(clip_log_mel, dim=1) * _DB_PER_NEPER_POWER  # (T,)
        active = frame_db >= frame_db.max() - config.activity_threshold_db
    values = clip_log_mel
    first = 0
    if config.time_fit and config.activity_threshold_db is not None:
        # the active region: first to last active frame (quiet frames inside it stay)
        active_frames = active.nonzero().flatten()
        first, last = int(active_frames[0]), int(active_frames[-1])
        values = values[first : last + 1]  # (T', M)
        active = active[first : last + 1]
    if config.cepstral_coefficients is not None:
        values = values @ _dct_matrix(config.n_mels, config.feature_bins)  # (T', C)
    mode = config.utterance_norm_mode
    if mode is not None:
        frames = values[active]  # (A, F), A >= 1: the loudest frame is always active
        values = values - frames.mean(dim=0)
        if mode == "mean_variance":
            spread = frames.std(dim=0, correction=0).clamp_min(_UTTERANCE_MIN_STD)  # (F,)
            values = values / spread
    return values, active, first


def _fit_time(values: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Linear resampling over time: (W, T_in, F) -> (W, n_frames, F)."""
    return torch.nn.functional.interpolate(
        values.transpose(1, 2), size=n_frames, mode="linear", align_corners=False
    ).transpose(1, 2)


@functools.lru_cache(maxsize=8)
def _dct_matrix(n_mels: int, n_coefficients: int) -> torch.Tensor:
    """(M, C): orthonormal DCT-II of a log-mel frame, columns c1..cC (c0 dropped)."""
    matrix = torchaudio.functional.create_dct(n_coefficients + 1, n_mels, norm="ortho")
    return matrix[:, 1:].contiguous()  # (M, C)


def _frame_count(n_samples: int, config: FeatureConfig) -> int:
    return 1 + max(0, n_samples - config.n_fft) // config.hop_length


def _check_log_mel(clip_log_mel: torch.Tensor, config: FeatureConfig) -> None:
    if clip_log_mel.ndim != 2 or clip_log_mel.shape[1] != config.n_mels:
        raise ValueError(
            f"expected a log-mel of shape (T, {config.n_mels}), got {tuple(clip_log_mel.shape)}"
        )
