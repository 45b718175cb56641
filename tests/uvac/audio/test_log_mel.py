"""uvac.audio.features: the log-mel spectrogram (`uvac.audio.log_mel.log_mel`,
`FeatureExtractor.log_mel`)."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio

from tests.audio_fixtures import chirp, noise, silence, tone
from tests.uvac.feature_helpers import RATE, clip
from uvac.audio.feature_config import FeatureConfig
from uvac.audio.features import FeatureExtractor
from uvac.audio.log_mel import log_mel


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


# --- log-mel ----------------------------------------------------------------------------------


def test_log_mel_equals_torchaudio_mel_spectrogram() -> None:
    config = FeatureConfig(f_min=50.0, f_max=7000.0)
    samples = chirp(100, 6000, 0.8) + noise(0.8, amplitude=0.01)
    reference = torchaudio.transforms.MelSpectrogram(
        sample_rate=RATE,
        n_fft=1024,
        win_length=960,
        hop_length=480,
        f_min=50.0,
        f_max=7000.0,
        n_mels=64,
        window_fn=torch.hann_window,
        power=2.0,
        center=False,
    )(torch.from_numpy(samples))  # (M, T)
    expected = torch.log(reference + 1e-6).T
    ours = log_mel(samples, config)
    assert ours.shape == expected.shape == (1 + (len(samples) - 1024) // 480, 64)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(FeatureExtractor(config).log_mel(clip(samples)), ours)


def test_log_mel_puts_a_tone_in_the_right_band() -> None:
    config = FeatureConfig()
    low = log_mel(tone(300, 0.5), config).mean(dim=0).argmax()
    high = log_mel(tone(5000, 0.5), config).mean(dim=0).argmax()
    assert low < high


def test_log_mel_of_a_clip_shorter_than_one_fft_is_one_frame() -> None:
    assert log_mel(tone(440, 0.01), FeatureConfig()).shape == (1, 64)


def test_log_mel_of_silence_is_finite() -> None:
    values = log_mel(silence(0.5), FeatureConfig())
    assert torch.isfinite(values).all()
    assert values.max().item() == pytest.approx(math.log(1e-6), abs=1e-3)
