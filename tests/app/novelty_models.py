"""A tiny model with a novelty score fitted on three tones, and the tone clips it knows: the
known/unknown cases of the novelty, stream and browser tests."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import torch

from tests.app.conftest import SAMPLE_RATE, TINY_FEATURES, tiny_trained_model
from tests.audio_fixtures import tone, wav_bytes
from uvac.audio import Audio, FeatureExtractor, load_audio
from uvac.novelty import fit_novelty, window_vectors
from uvac.training import TrainedModel

TONES_HZ = (300.0, 700.0, 1500.0)


def tone_clip(hz: float, index: int) -> np.ndarray:
    rng = np.random.default_rng(index)
    amplitude = float(rng.uniform(0.2, 0.6))
    clip = tone(hz * float(rng.uniform(0.97, 1.03)), 1.0, sample_rate=SAMPLE_RATE)
    # Through a 16-bit WAV, as an upload is: the score is fitted on what serving sees.
    wav = wav_bytes(clip * amplitude / 0.5, sample_rate=SAMPLE_RATE)
    return load_audio(io.BytesIO(wav), sample_rate=SAMPLE_RATE).samples


def model_with_novelty() -> TrainedModel:
    """The tiny model with a novelty score fitted on windows of three tones."""
    trained = tiny_trained_model()
    extractor = FeatureExtractor(TINY_FEATURES, trained.norm_stats)
    audios = [
        Audio.from_samples(tone_clip(hz, index), sample_rate=SAMPLE_RATE)
        for hz in TONES_HZ
        for index in range(12)
    ]
    windows, slices = extractor.windows_batch(audios)
    clip_index = torch.cat([torch.full((s.stop - s.start,), i) for i, s in enumerate(slices)])
    novelty = fit_novelty(window_vectors(windows.features, windows.mask), clip_index, n_clusters=3)
    assert novelty is not None
    return dataclasses.replace(trained, novelty=novelty)
