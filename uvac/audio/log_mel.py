"""The log-mel front-end's signal processing: spectrogram, activity, cepstra, time fitting.

Pure functions of a clip and its `FeatureConfig`; `uvac.audio.features` (normalisation statistics
and windows) builds on them, and its docstring draws the whole pipeline.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torchaudio

from uvac.audio.feature_config import FeatureConfig

__all__ = [
    "LOG_OFFSET",
    "LogMel",
    "check_log_mel",
    "dct_matrix",
    "fit_time",
    "log_mel",
    "prepare_clip",
    "prepare_clip_at",
]

# log(mel + LOG_OFFSET): keeps digital silence finite (log(1e-6) = -13.8).
LOG_OFFSET = 1e-6

# A clip's per-bin spread below this (a constant bin) is not scaled up (utterance CMVN).
_UTTERANCE_MIN_STD = 1e-3

_DB_PER_NEPER_POWER = 10.0 / math.log(10.0)  # 10 * log10(p) = this * ln(p)


def log_mel(samples: np.ndarray | torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Log-mel spectrogram (T, M) of mono ``samples`` at ``config.sample_rate``.

    Builds the transform on every call; code that runs per request keeps a
    ``FeatureExtractor``, which builds it once.
    """
    return LogMel(config)(samples)


class LogMel:
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


def prepare_clip(
    clip_log_mel: torch.Tensor, config: FeatureConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-clip steps before global normalisation (see the module docstring): the prepared
    values (T', F) and their activity (T',) bool."""
    values, active, _ = prepare_clip_at(clip_log_mel, config)
    return values, active


def prepare_clip_at(
    clip_log_mel: torch.Tensor, config: FeatureConfig
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """`prepare_clip`, plus the index of the clip's first kept frame (time_fit trims)."""
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
        values = values @ dct_matrix(config.n_mels, config.feature_bins)  # (T', C)
    mode = config.utterance_norm_mode
    if mode is not None:
        frames = values[active]  # (A, F), A >= 1: the loudest frame is always active
        values = values - frames.mean(dim=0)
        if mode == "mean_variance":
            spread = frames.std(dim=0, correction=0).clamp_min(_UTTERANCE_MIN_STD)  # (F,)
            values = values / spread
    return values, active, first


def fit_time(values: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Linear resampling over time: (W, T_in, F) -> (W, n_frames, F)."""
    return torch.nn.functional.interpolate(
        values.transpose(1, 2), size=n_frames, mode="linear", align_corners=False
    ).transpose(1, 2)


@functools.lru_cache(maxsize=8)
def dct_matrix(n_mels: int, n_coefficients: int) -> torch.Tensor:
    """(M, C): orthonormal DCT-II of a log-mel frame, columns c1..cC (c0 dropped)."""
    matrix = torchaudio.functional.create_dct(n_coefficients + 1, n_mels, norm="ortho")
    return matrix[:, 1:].contiguous()  # (M, C)


def check_log_mel(clip_log_mel: torch.Tensor, config: FeatureConfig) -> None:
    if clip_log_mel.ndim != 2 or clip_log_mel.shape[1] != config.n_mels:
        raise ValueError(
            f"expected a log-mel of shape (T, {config.n_mels}), got {tuple(clip_log_mel.shape)}"
        )
