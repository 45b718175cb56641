"""uvac.audio.features: options beyond the paper (cepstra, utterance CMVN, time fit)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchaudio

from tests.audio_fixtures import chirp, noise, silence
from tests.uvac.feature_helpers import clip, fitted_extractor
from uvac.audio.decoding import Audio
from uvac.audio.feature_config import FeatureConfig
from uvac.audio.features import FeatureExtractor, NormStats


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


# --- options beyond the paper: cepstra, utterance CMVN, time fit ------------------------------

UTTERANCE_CONFIG = FeatureConfig(
    cepstral_coefficients=16,
    utterance_norm="mean_variance",
    activity_threshold_db=30.0,
    time_fit=True,
    fit_frames=32,
    window_seconds=5.0,
    window_hop_seconds=2.5,
)


def test_new_options_are_off_by_default_and_round_trip_through_json() -> None:
    default = FeatureConfig()
    assert default.cepstral_coefficients is None and default.time_fit is False
    assert default.feature_bins == default.n_mels and default.utterance_norm_mode is None
    restored = FeatureConfig.from_dict(json.loads(json.dumps(UTTERANCE_CONFIG.to_dict())))
    assert restored == UTTERANCE_CONFIG
    assert UTTERANCE_CONFIG.input_shape == (1, 32, 16)
    assert FeatureConfig(utterance_norm=True).utterance_norm_mode == "mean"
    # a preset's count survives a smaller n_mels: at most n_mels - 1 coefficients
    assert FeatureConfig(n_mels=16, cepstral_coefficients=16).input_shape == (1, 32, 15)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"cepstral_coefficients": 0}, "cepstral_coefficients"),
        ({"utterance_norm": "variance"}, "utterance_norm"),
        ({"time_fit": "yes"}, "time_fit"),
        ({"fit_frames": 0}, "fit_frames"),
    ],
)
def test_invalid_new_options_are_refused(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FeatureConfig(**overrides)  # type: ignore[arg-type]


def test_cepstral_features_are_the_dct_of_the_log_mel_without_c0() -> None:
    config = FeatureConfig(cepstral_coefficients=16)
    extractor = fitted_extractor(config)
    audio = clip(chirp(300, 3000, 0.8))
    expected_dct = torchaudio.functional.create_dct(17, config.n_mels, norm="ortho")[:, 1:]
    cepstra = extractor.log_mel(audio) @ expected_dct  # (T, 16)
    stats = extractor.stats
    assert stats is not None and stats.feature_bins == 16
    scaled = ((cepstra - stats.mean) / stats.std - stats.minimum) / (stats.maximum - stats.minimum)
    values, _ = extractor.normalised(audio)
    torch.testing.assert_close(values, scaled.clamp(0, 1), atol=1e-4, rtol=0)
    assert extractor.windows(audio).features.shape == (1, 1, 32, 16)


def test_cepstra_with_utterance_norm_ignore_gain_and_a_fixed_channel_tilt() -> None:
    extractor = fitted_extractor(FeatureConfig(cepstral_coefficients=16, utterance_norm="mean"))
    base = chirp(200, 4000, 1.0) + noise(1.0, amplitude=0.05)
    # a first-difference filter: a fixed spectral tilt, like another microphone
    tilted = np.concatenate([[base[0]], base[1:] - 0.9 * base[:-1]]).astype(np.float32)
    plain = extractor.windows(clip(base * 0.5)).features
    torch.testing.assert_close(
        extractor.windows(clip(base * 0.05)).features, plain, atol=1e-3, rtol=0
    )
    assert (extractor.windows(clip(tilted)).features - plain).abs().mean() < 0.02


def test_mean_variance_norm_standardises_each_bin_of_the_clip() -> None:
    config = FeatureConfig(utterance_norm="mean_variance")
    raw = FeatureExtractor(config)
    audio = clip(chirp(200, 4000, 1.0) + noise(1.0, amplitude=0.05))
    stats = NormStats(
        mean=torch.zeros(64), std=torch.ones(64), minimum=-1000.0, maximum=1000.0
    )  # identity up to a known affine map
    values, _ = FeatureExtractor(config, stats).normalised(audio)
    standardised = values * 2000.0 - 1000.0  # (T, M)
    torch.testing.assert_close(standardised.mean(dim=0), torch.zeros(64), atol=2e-3, rtol=0)
    torch.testing.assert_close(
        standardised.std(dim=0, correction=0), torch.ones(64), atol=2e-3, rtol=0
    )
    raw_spread = raw.log_mel(audio).std(dim=0, correction=0)  # (M,)
    assert (raw_spread - 1).abs().mean() > 0.3  # the raw clip was far from standardised


def test_time_fit_gives_one_full_window_whatever_the_length_and_leading_silence() -> None:
    extractor = fitted_extractor(UTTERANCE_CONFIG)
    word = chirp(300, 2500, 0.4)
    for audio in (
        clip(word),
        clip(np.concatenate([silence(0.6), word, silence(0.3)])),
        clip(chirp(300, 2500, 1.3)),  # the same sweep, spoken three times slower
        clip(noise(3.0)),
    ):
        windows = extractor.windows(audio)
        assert windows.features.shape == (1, 1, 32, 16)
        assert torch.all(windows.mask == 1.0) and float(windows.activity[0]) == 1.0
        assert windows.starts_s == [0.0] and windows.ends_s == [audio.duration_s]

    def distance(audio: Audio) -> float:
        return float((extractor.windows(audio).features - alone).abs().mean())

    alone = extractor.windows(clip(word)).features
    # other sounds: the sweep backwards, noise
    other = min(distance(clip(chirp(2500, 300, 0.4))), distance(clip(noise(0.4, seed=5))))
    # the same sweep after silence, and spoken three times slower, look alike
    assert distance(clip(np.concatenate([silence(0.6), word, silence(0.3)]))) < 0.6 * other
    assert distance(clip(chirp(300, 2500, 1.3))) < 0.3 * other


def test_time_fit_without_fit_frames_uses_the_window_seconds() -> None:
    config = FeatureConfig(time_fit=True, window_seconds=1.0)
    assert config.window_frames == FeatureConfig().window_frames
    windows = fitted_extractor(config).windows(clip(noise(0.6)))
    assert len(windows) == 1 and windows.features.shape[2] == config.frames_per_window


def test_time_fit_cuts_a_clip_longer_than_the_window_into_fitted_windows() -> None:
    extractor = fitted_extractor(UTTERANCE_CONFIG)
    audio = clip(np.concatenate([silence(1.0), noise(11.0, seed=2)]))  # 12 s, 1 s silent
    windows = extractor.windows(audio)
    assert len(windows) == 4  # 11 s of sound in 5 s windows every 2.5 s, the last at the end
    assert windows.features.shape == (4, 1, 32, 16)
    assert torch.all(windows.mask == 1.0) and torch.all(windows.activity == 1.0)
    assert windows.starts_s[0] == pytest.approx(1.0, abs=0.05)  # after the trimmed silence
    assert windows.ends_s[-1] == pytest.approx(12.0, abs=0.05)
    assert windows.starts_s[1] - windows.starts_s[0] == pytest.approx(2.5, abs=0.02)
