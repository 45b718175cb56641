"""Shared by the uvac.audio.features tests: clips at the default rate, and an extractor whose
normalisation statistics are fitted on a few varied training clips."""

from __future__ import annotations

import numpy as np

from tests.audio_fixtures import chirp, noise, tone
from uvac.audio.decoding import Audio
from uvac.audio.feature_config import FeatureConfig
from uvac.audio.features import FeatureExtractor, fit_norm_stats

RATE = 16000


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
