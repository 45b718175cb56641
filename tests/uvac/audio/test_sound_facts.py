"""Level, digital silence and speech activity (uvac.audio.level, uvac.audio.speech_activity)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio_fixtures import noise, silence, tone
from uvac.audio import FLOOR_DBFS, Audio, level_of, load_speech_detector


def test_digital_silence_is_silence_at_the_floor() -> None:
    level = level_of(silence(1.0))
    assert level.silence and level.dbfs == FLOOR_DBFS


def test_one_step_of_16_bit_audio_is_not_silence() -> None:
    samples = np.zeros(1000, dtype=np.float32)
    samples[500] = 1 / 32768
    assert not level_of(samples).silence


@pytest.mark.parametrize(("amplitude", "dbfs"), [(1.0, -3.01), (0.1, -23.01)])
def test_level_is_rms_relative_to_full_scale(amplitude: float, dbfs: float) -> None:
    assert level_of(tone(1000, 1.0, amplitude=amplitude)).dbfs == pytest.approx(dbfs, abs=0.02)


def test_speech_detector_records_its_weights_and_hears_no_speech_in_tones_or_silence() -> None:
    detector = load_speech_detector()
    assert detector.identity.package == "silero-vad" and len(detector.identity.sha256) == 64
    clip = np.concatenate([tone(440, 1.0), silence(1.0), noise(1.0, amplitude=0.01)])
    audio = Audio.from_samples(clip, sample_rate=16000)
    shares = detector.speech_shares(audio, [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (0.0, 3.0)])
    assert len(shares) == 4
    assert all(0.0 <= share <= 0.2 for share in shares)


def test_speech_shares_follow_the_spans_at_other_rates() -> None:
    audio = Audio.from_samples(silence(2.0, sample_rate=8000), sample_rate=8000)
    assert load_speech_detector().speech_shares(audio, [(0.0, 1.0), (5.0, 6.0)]) == [0.0, 0.0]
