"""Features: log-mel spectrograms, normalisation statistics and time-context windows.

This module is the ``frontend="log-mel"`` pipeline. With a pretrained encoder as the
front-end (``FeatureConfig.frontend``), `FeatureExtractor` hands the clip to
`uvac.audio.embedding_windows.EmbeddingWindower` instead and the rest of this docstring does not
apply.

The pipeline for one clip, the same in training and at inference::

    samples (N,) --MelSpectrogram, log--> log-mel (T_clip, M)        log_mel()
      --> activity per frame                                         prepare_clip()
          [optional: trim to the active region        (time_fit)]
          [optional: cepstra, DCT-II, c0 dropped  (cepstral_coefficients)]
          [optional: per-utterance mean (and variance) normalisation (utterance_norm)]
          [optional: resample the clip to one window  (time_fit)]
      --> (x - mean) / std per bin, then min-max to [0, 1], clamped  NormStats
      --> windows (W, 1, T, F) with a mask (W, T)                    FeatureExtractor.windows()

F, the feature bins the networks see (``FeatureConfig.feature_bins``), is ``n_mels`` for
log-mel features and ``cepstral_coefficients`` for cepstral ones.

Options beyond the paper, all off by default (the paper's recipe), chosen by the quality study
(``benchmarks/quality.py``, ``uvac.training.presets``):

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

import math
from collections.abc import Generator, Iterable, Sequence

import numpy as np
import torch

from uvac.audio.decoding import Audio
from uvac.audio.embedding_windows import EmbeddingWindower
from uvac.audio.encoders import WindowStart
from uvac.audio.feature_config import FeatureConfig, frame_count
from uvac.audio.log_mel import LogMel, check_log_mel, fit_time, prepare_clip, prepare_clip_at
from uvac.audio.windows import NormStats, Windows, concatenate_windows

__all__ = ["FeatureExtractor", "fit_norm_stats"]

# A per-mel standard deviation below this is a constant bin; it is left unscaled.
_MIN_STD = 1e-5


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
        check_log_mel(clip_log_mel, config)
        values, active = prepare_clip(clip_log_mel, config)
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
            self.embedder = EmbeddingWindower(config, stats)
            return
        self._log_mel = LogMel(config)
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
        values, active = prepare_clip(self.log_mel(audio), self.config)
        return self._normalise(values), active

    def windows(self, audio: Audio) -> Windows:
        """One clip's windows (see the module docstring for the rules)."""
        return self.windows_batch([audio])[0]

    def windows_batch(
        self, audios: Sequence[Audio], *, started: Sequence[WindowStart | None] | None = None
    ) -> tuple[Windows, list[slice]]:
        """All windows of all clips in one ``Windows``, and each clip's slice of it;
        ``started``: an encoder's early start of each clip's first window (`start_window`),
        which a log-mel front-end never has."""
        if self.embedder is not None:
            return self.embedder.windows_batch(audios, started=started)
        if not audios:
            raise ValueError("windows_batch needs at least one clip")
        return concatenate_windows([self._clip_windows(audio) for audio in audios])

    @property
    def starts_early(self) -> bool:
        """Whether `start_window` can begin a window (an encoder that can)."""
        return self.embedder is not None and self.embedder.encoder.starts_early

    def start_window(self, heard: Audio) -> Generator[None, None, WindowStart | None]:
        """The encoder's work on a window's first samples ``heard``, done in steps before
        the rest arrives (`Encoder.start_window`); it gives None for a log-mel front-end
        (its windows cost little) or an encoder that cannot start early."""
        if self.embedder is None:
            yield from ()
            return None
        return (yield from self.embedder.encoder.start_window(torch.from_numpy(heard.samples)))

    def start_holds(self, heard: Audio, later: np.ndarray) -> bool:
        """Whether a `start_window` on ``heard`` can still be finished once the window's
        ``later`` samples have arrived after them (`Encoder.start_holds`)."""
        if self.embedder is None:
            return True
        encoder = self.embedder.encoder
        return encoder.start_holds(torch.from_numpy(heard.samples), torch.from_numpy(later))

    def _clip_windows(self, audio: Audio) -> Windows:
        if self.config.time_fit:
            return self._fitted_windows(audio)
        config = self.config
        values, active = self.normalised(audio)  # (T_clip, M), (T_clip,)
        clip_frames = values.shape[0]
        window_frames = config.window_frames
        input_frames = config.frames_per_window
        starts = self._window_start_frames(clip_frames)
        if clip_frames <= window_frames:
            real_frames = clip_frames
            windowed_values = values.unsqueeze(0)  # (1, T_clip, M)
            windowed_active = active.unsqueeze(0)  # (1, T_clip)
        else:
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

    def window_start_samples(self, n_samples: int) -> list[int]:
        """First sample of every window `windows` cuts from a clip of ``n_samples`` (without
        ``time_fit``, whose windows follow the clip's active region)."""
        if self.embedder is not None:
            return self.embedder.window_starts(n_samples)
        if self.config.time_fit:
            raise ValueError("time_fit windows depend on the clip's sound, not only its length")
        starts = self._window_start_frames(frame_count(n_samples, self.config))
        return [start * self.config.hop_length for start in starts]

    def _window_start_frames(self, clip_frames: int) -> list[int]:
        """Every hop, and the last window aligned to the clip's end; one for a short clip."""
        window_frames = self.config.window_frames
        if clip_frames <= window_frames:
            return [0]
        last_start = clip_frames - window_frames
        starts = list(range(0, last_start + 1, self.config.window_hop_frames))
        if starts[-1] != last_start:
            starts.append(last_start)
        return starts

    def _fitted_windows(self, audio: Audio) -> Windows:
        """time_fit: the trimmed clip cut into windows of ``span_frames`` (one window when it
        is no longer), each resampled to ``window_frames``; every frame is real (mask 1)."""
        config = self.config
        prepared, _, first = prepare_clip_at(self.log_mel(audio), config)
        values = self._normalise(prepared)  # (T', F)
        clip_frames, span = values.shape[0], config.span_frames
        if clip_frames <= span:
            starts, lengths = [0], [clip_frames]
            fitted = fit_time(values.unsqueeze(0), config.window_frames)  # (1, T_w, F)
        else:
            last_start = clip_frames - span
            starts = list(range(0, last_start + 1, config.window_hop_frames))
            if starts[-1] != last_start:
                starts.append(last_start)
            lengths = [span] * len(starts)
            index = torch.tensor(starts).unsqueeze(1) + torch.arange(span).unsqueeze(0)
            fitted = fit_time(values[index], config.window_frames)  # (W, T_w, F)
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
