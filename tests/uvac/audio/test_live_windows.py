"""`LiveWindows`: a live stream's windows are the extractor's windows of the same audio, less
the one aligned to a recording's end, and each one cut out alone gives the same features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.audio_fixtures import noise
from tests.uvac.feature_helpers import RATE, clip, fitted_extractor
from uvac.audio import FeatureConfig, LiveWindows, streaming_obstacles

CONFIGS = [
    FeatureConfig(sample_rate=RATE, window_seconds=0.5, window_hop_seconds=0.25),
    FeatureConfig(sample_rate=RATE, n_fft=320, win_length=320, hop_length=320,
                  n_mels=32, window_seconds=1.28, window_hop_seconds=0.64),
]  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("seconds", [0.2, 0.5, 0.77, 1.3, 2.01, 3.0])
def test_live_windows_are_the_extractor_windows_less_the_aligned_one(
    config: FeatureConfig, seconds: float
) -> None:
    extractor = fitted_extractor(config)
    live = LiveWindows.of(config)
    audio = clip(noise(seconds, seed=int(seconds * 100)))
    n_samples = audio.samples.shape[0]
    windows = extractor.windows(audio)
    starts = extractor.window_start_samples(n_samples)
    assert [start / RATE for start in starts] == pytest.approx(windows.starts_s)
    decisions = list(live.decision_starts(n_samples))
    assert starts[: len(decisions)] == decisions
    assert len(starts) - len(decisions) <= 1  # at most the window aligned to the end
    for index, start in enumerate(decisions):
        alone = extractor.windows(clip(audio.samples[start : start + live.window_samples]))
        assert len(alone) == 1
        if len(starts) > 1:  # a clip of one window ends where the clip does
            assert windows.ends_s[index] == pytest.approx((start + live.window_samples) / RATE)
        torch.testing.assert_close(alone.features[0], windows.features[index])
        assert float(alone.activity[0]) == pytest.approx(1.0)


def test_features_that_need_the_whole_clip_are_named() -> None:
    assert streaming_obstacles(CONFIGS[0]) == []
    config = FeatureConfig(sample_rate=RATE, utterance_norm=True, activity_threshold_db=40.0)
    reasons = streaming_obstacles(config)
    assert len(reasons) == 2
    assert any("utterance_norm" in reason for reason in reasons)
    assert np.all(["whole clip" in reason for reason in reasons])
