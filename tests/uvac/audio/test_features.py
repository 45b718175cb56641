"""uvac.audio.features: configuration and windows (log-mel: test_log_mel.py, normalisation
statistics: test_norm_stats.py, options beyond the paper: test_feature_options.py)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from tests.audio_fixtures import chirp, noise, silence, tone, wav_bytes
from tests.uvac.feature_helpers import RATE, clip, fitted_extractor
from uvac.audio.decoding import Audio, load_audio
from uvac.audio.feature_config import FeatureConfig
from uvac.audio.features import FeatureExtractor, Windows


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


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
