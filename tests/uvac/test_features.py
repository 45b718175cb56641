"""uvac.features: configuration, log-mel, normalisation statistics and windows."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import safetensors.torch
import torch
import torchaudio

from tests.audio_fixtures import chirp, noise, silence, tone, wav_bytes
from uvac.audio import Audio, load_audio
from uvac.feature_config import FeatureConfig
from uvac.features import FeatureExtractor, NormStats, Windows, fit_norm_stats
from uvac.log_mel import log_mel

RATE = 16000


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def clip(samples: np.ndarray) -> Audio:
    return Audio.from_samples(samples, sample_rate=RATE)


def training_clips() -> list[Audio]:
    return [
        clip(tone(440, 1.0)),
        clip(chirp(200, 4000, 1.5)),
        clip(noise(0.7, seed=3)),
        clip(tone(1500, 0.4, amplitude=0.1) + noise(0.4, amplitude=0.01, seed=4)),
    ]


def fitted_extractor(config: FeatureConfig | None = None) -> FeatureExtractor:
    config = config or FeatureConfig()
    raw = FeatureExtractor(config)
    stats = fit_norm_stats((raw.log_mel(audio) for audio in training_clips()), config)
    return FeatureExtractor(config, stats)


# --- FeatureConfig ----------------------------------------------------------------------------


def test_default_config_is_the_documented_one() -> None:
    config = FeatureConfig()
    assert (config.sample_rate, config.n_fft, config.win_length, config.hop_length) == (
        16000,
        1024,
        960,
        480,
    )
    assert (config.n_mels, config.f_min, config.f_max) == (64, 0.0, None)
    assert (config.window_seconds, config.window_hop_seconds) == (1.0, 0.5)
    assert config.utterance_norm is False and config.activity_threshold_db is None
    # 1 s without centring: 1 + (16000 - 1024) // 480 = 32 frames, already a multiple of 16
    assert config.window_frames == 32
    assert config.frames_per_window == 32
    assert config.window_hop_frames == 17
    assert config.input_shape == (1, 32, 64)


@pytest.mark.parametrize(
    ("window_seconds", "window_frames", "frames_per_window"),
    [(0.5, 15, 16), (1.0, 32, 32), (4.0, 132, 144), (5.0, 165, 176)],
)
def test_frames_per_window_is_rounded_up_to_a_multiple_of_16(
    window_seconds: float, window_frames: int, frames_per_window: int
) -> None:
    config = FeatureConfig(window_seconds=window_seconds)
    assert config.window_frames == window_frames
    assert config.frames_per_window == frames_per_window
    assert config.frames_per_window % 16 == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_mels": 40}, "multiple of 16"),
        ({"n_mels": 0}, "positive integer"),
        ({"hop_length": -1}, "positive integer"),
        ({"n_fft": 512.0}, "positive integer"),
        ({"win_length": 2048}, "win_length"),
        ({"f_max": 9000.0}, "f_max"),
        ({"f_min": 5000.0, "f_max": 4000.0}, "f_min"),
        ({"window_seconds": 0.01}, "window_seconds"),
        ({"window_hop_seconds": 0.0}, "window_hop_seconds"),
        ({"activity_threshold_db": 0.0}, "activity_threshold_db"),
        ({"utterance_norm": "yes"}, "utterance_norm"),
    ],
)
def test_invalid_config_is_refused_with_a_clear_message(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FeatureConfig(**changes)  # type: ignore[arg-type]


def test_config_json_round_trip() -> None:
    config = FeatureConfig(
        n_mels=128,
        f_max=7600.0,
        window_seconds=5.0,
        utterance_norm=True,
        activity_threshold_db=40.0,
    )
    rebuilt = FeatureConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert rebuilt == config
    assert FeatureConfig.from_dict({}) == FeatureConfig()


def test_config_from_dict_rejects_unknown_keys() -> None:
    data = FeatureConfig().to_dict() | {"n_mel": 64}
    with pytest.raises(ValueError, match="unknown feature configuration keys: n_mel"):
        FeatureConfig.from_dict(data)


def test_config_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FeatureConfig().n_mels = 128  # type: ignore[misc]


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


# --- normalisation statistics -----------------------------------------------------------------


def test_norm_stats_match_a_direct_computation_and_map_training_frames_onto_0_1() -> None:
    config = FeatureConfig()
    raw = FeatureExtractor(config)
    log_mels = [raw.log_mel(audio) for audio in training_clips()]
    stats = fit_norm_stats(iter(log_mels), config)  # a one-pass iterator is enough

    frames = torch.cat(log_mels).double()  # (sum T, M)
    torch.testing.assert_close(stats.mean.double(), frames.mean(dim=0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        stats.std.double(), frames.std(dim=0, unbiased=False), rtol=1e-4, atol=1e-5
    )
    standardised = (frames - frames.mean(dim=0)) / frames.std(dim=0, unbiased=False)
    assert stats.minimum == pytest.approx(standardised.min().item(), rel=1e-4)
    assert stats.maximum == pytest.approx(standardised.max().item(), rel=1e-4)

    extractor = FeatureExtractor(config, stats)
    normalised = torch.cat([extractor.normalised(audio)[0] for audio in training_clips()])
    assert normalised.min().item() == pytest.approx(0.0, abs=1e-5)
    assert normalised.max().item() == pytest.approx(1.0, abs=1e-5)


def test_norm_stats_tensor_round_trip_through_safetensors() -> None:
    stats = fitted_extractor().stats
    assert stats is not None
    tensors = stats.to_tensors()
    assert all(key.startswith("norm_stats.") for key in tensors)
    loaded = safetensors.torch.load(safetensors.torch.save(tensors | {"model.w": torch.ones(3)}))
    rebuilt = NormStats.from_tensors(loaded)  # other keys are ignored
    torch.testing.assert_close(rebuilt.mean, stats.mean)
    torch.testing.assert_close(rebuilt.std, stats.std)
    assert (rebuilt.minimum, rebuilt.maximum) == (stats.minimum, stats.maximum)
    audio = clip(chirp(300, 3000, 1.3))
    torch.testing.assert_close(
        FeatureExtractor(FeatureConfig(), rebuilt).windows(audio).features,
        FeatureExtractor(FeatureConfig(), stats).windows(audio).features,
    )


def test_norm_stats_from_incomplete_or_bad_tensors_is_refused() -> None:
    stats = fitted_extractor().stats
    assert stats is not None
    tensors = stats.to_tensors()
    with pytest.raises(ValueError, match=r"missing: norm_stats\.std"):
        NormStats.from_tensors({k: v for k, v in tensors.items() if k != "norm_stats.std"})
    with pytest.raises(ValueError, match="positive"):
        NormStats.from_tensors(tensors | {"norm_stats.std": torch.zeros(64)})
    with pytest.raises(ValueError, match="exceed"):
        NormStats.from_tensors(tensors | {"norm_stats.maximum": torch.tensor([-1e9])})
    with pytest.raises(ValueError, match="finite"):
        NormStats.from_tensors(tensors | {"norm_stats.mean": torch.full((64,), math.nan)})


def test_extractor_refuses_stats_of_another_mel_count() -> None:
    stats = fitted_extractor().stats
    with pytest.raises(ValueError, match="mel bins"):
        FeatureExtractor(FeatureConfig(n_mels=128), stats)


def test_fit_norm_stats_needs_frames_of_the_configured_shape() -> None:
    with pytest.raises(ValueError, match="no active frames"):
        fit_norm_stats([], FeatureConfig())
    with pytest.raises(ValueError, match=r"\(T, 64\)"):
        fit_norm_stats([torch.zeros(10, 32)], FeatureConfig())


def test_constant_training_data_still_gives_usable_stats() -> None:
    config = FeatureConfig()
    stats = fit_norm_stats([torch.zeros(5, 64)], config)
    assert torch.all(stats.std == 1.0) and stats.maximum > stats.minimum


# --- windows ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "n_windows"), [(0.2, 1), (1.0, 1), (1.35, 2), (3.7, 7)])
def test_window_shapes_for_several_lengths(seconds: float, n_windows: int) -> None:
    extractor = fitted_extractor()
    windows = extractor.windows(clip(chirp(200, 3000, seconds)))
    assert isinstance(windows, Windows)
    assert len(windows) == n_windows
    assert windows.features.shape == (n_windows, 1, 32, 64)
    assert windows.features.dtype == torch.float32
    assert windows.mask.shape == (n_windows, 32)
    assert windows.activity.shape == (n_windows,)
    assert len(windows.starts_s) == len(windows.ends_s) == n_windows
    assert windows.features.min() >= 0.0 and windows.features.max() <= 1.0


@pytest.mark.parametrize("source_rate", [8000, 22050, 44100, 48000])
def test_windows_from_loaded_files_at_several_sample_rates(source_rate: int) -> None:
    data = wav_bytes(chirp(200, 3000, 2.2, sample_rate=source_rate), sample_rate=source_rate)
    audio = load_audio(data, sample_rate=RATE)
    windows = fitted_extractor().windows(audio)
    assert windows.features.shape == (4, 1, 32, 64)  # starts at 0, 0.51, 1.02 and 1.2 s
    assert windows.ends_s[-1] == pytest.approx(2.2, abs=0.035)


def test_short_clip_is_zero_padded_with_a_mask_on_the_padding() -> None:
    extractor = fitted_extractor()
    audio = clip(noise(0.2, amplitude=0.3))
    real_frames = 1 + (3200 - 1024) // 480  # 5
    windows = extractor.windows(audio)
    expected_mask = torch.zeros(1, 32)
    expected_mask[0, :real_frames] = 1.0
    torch.testing.assert_close(windows.mask, expected_mask)
    assert torch.all(windows.features[0, 0, real_frames:] == 0.0)
    assert torch.all(windows.features[0, 0, :real_frames] > 0.0)  # noise is well above min
    torch.testing.assert_close(windows.features[0, 0, :real_frames], extractor.normalised(audio)[0])
    assert windows.activity.item() == pytest.approx(real_frames / 32)
    assert (windows.starts_s, windows.ends_s) == ([0.0], [pytest.approx(0.2)])


def test_long_clip_windows_cover_every_frame_and_end_at_the_clip_end() -> None:
    config = FeatureConfig()
    extractor = fitted_extractor(config)
    audio = clip(chirp(100, 5000, 3.7))
    normalised, _ = extractor.normalised(audio)  # (T_clip, M)
    clip_frames = normalised.shape[0]
    windows = extractor.windows(audio)
    hop_s = config.hop_length / RATE

    start_frames = [round(start / hop_s) for start in windows.starts_s]
    assert start_frames[:-1] == list(range(0, start_frames[-2] + 1, config.window_hop_frames))
    assert start_frames[-1] == clip_frames - config.window_frames  # aligned to the end
    covered: set[int] = set()
    for index, start in enumerate(start_frames):
        torch.testing.assert_close(
            windows.features[index, 0], normalised[start : start + config.window_frames]
        )
        covered.update(range(start, start + config.window_frames))
    assert covered == set(range(clip_frames))
    assert torch.all(windows.mask == 1.0) and torch.all(windows.activity == 1.0)
    assert windows.ends_s[-1] <= audio.duration_s
    assert audio.duration_s - windows.ends_s[-1] < hop_s  # at most a partial hop unanalysed
    assert all(
        end - start == pytest.approx(1.0 - 0.006, abs=1e-9)  # 31 hops + one FFT
        for start, end in zip(windows.starts_s, windows.ends_s, strict=True)
    )


def test_window_padding_for_a_window_that_is_not_a_multiple_of_16() -> None:
    config = FeatureConfig(window_seconds=0.5, window_hop_seconds=0.25)
    windows = fitted_extractor(config).windows(clip(noise(1.0, amplitude=0.3)))
    assert windows.features.shape[2] == 16
    assert torch.all(windows.mask[:, :15] == 1.0) and torch.all(windows.mask[:, 15] == 0.0)
    assert torch.all(windows.features[:, 0, 15] == 0.0)
    assert torch.all(windows.activity == 1.0)


def test_louder_than_training_input_is_clamped_to_0_1() -> None:
    extractor = fitted_extractor()
    loud = clip(np.clip(noise(1.0, amplitude=5.0), -30, 30))
    features = extractor.windows(loud).features
    assert features.max().item() == 1.0  # clamped, not above
    quiet = clip(noise(1.0, amplitude=1e-9))
    assert extractor.windows(quiet).features.min().item() == 0.0


def test_activity_threshold_masks_quiet_frames_but_keeps_their_values() -> None:
    config = FeatureConfig(activity_threshold_db=30.0)
    extractor = fitted_extractor(config)
    samples = np.concatenate([tone(440, 0.5), silence(0.5)]) + noise(1.0, amplitude=1e-5)
    audio = clip(samples)
    windows = extractor.windows(audio)
    assert windows.mask.shape == (1, 32)
    # the tone's frames are active, the near-silent ones (about -90 dB) are not
    assert torch.all(windows.mask[0, :14] == 1.0)
    assert torch.all(windows.mask[0, 17:] == 0.0)
    assert 0.4 < windows.activity.item() < 0.6
    # masked frames are real audio: their features are not zeroed
    assert windows.features[0, 0, 20:].abs().sum() > 0
    unmasked = fitted_extractor(FeatureConfig()).windows(audio)
    assert torch.all(unmasked.mask == 1.0)


def test_utterance_norm_removes_a_gain_difference() -> None:
    base = chirp(200, 4000, 1.0) + noise(1.0, amplitude=0.05)
    quiet, loud = clip(base * 0.05), clip(base * 0.8)
    with_norm = fitted_extractor(FeatureConfig(utterance_norm=True))
    torch.testing.assert_close(
        with_norm.windows(quiet).features, with_norm.windows(loud).features, atol=1e-3, rtol=0
    )
    without = fitted_extractor(FeatureConfig())
    difference = without.windows(quiet).features - without.windows(loud).features
    assert difference.abs().mean() > 0.05


def test_windows_batch_equals_per_clip_windows_with_slices() -> None:
    extractor = fitted_extractor()
    audios = [clip(tone(440, 0.3)), clip(chirp(200, 4000, 2.6)), clip(noise(1.0))]
    batch, slices = extractor.windows_batch(audios)
    assert slices[0].start == 0 and slices[-1].stop == len(batch)
    for audio, part in zip(audios, slices, strict=True):
        alone = extractor.windows(audio)
        torch.testing.assert_close(batch.features[part], alone.features)
        torch.testing.assert_close(batch.mask[part], alone.mask)
        torch.testing.assert_close(batch.activity[part], alone.activity)
        assert batch.starts_s[part] == alone.starts_s
        assert batch.ends_s[part] == alone.ends_s
    with pytest.raises(ValueError, match="at least one clip"):
        extractor.windows_batch([])


def test_windows_are_deterministic() -> None:
    audio = clip(noise(1.7, seed=9))
    first, second = fitted_extractor().windows(audio), fitted_extractor().windows(audio)
    assert torch.equal(first.features, second.features)


def test_extractor_refuses_audio_at_another_rate_and_windows_without_stats() -> None:
    extractor = fitted_extractor()
    with pytest.raises(ValueError, match="8000 Hz"):
        extractor.windows(Audio.from_samples(tone(440, 0.5, sample_rate=8000), sample_rate=8000))
    with pytest.raises(RuntimeError, match="no normalisation statistics"):
        FeatureExtractor(FeatureConfig()).windows(clip(tone(440, 0.5)))


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
