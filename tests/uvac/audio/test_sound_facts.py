"""Level, digital silence and speech activity (uvac.audio.level, uvac.audio.speech_activity)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio_fixtures import noise, silence, tone
from uvac.audio import FLOOR_DBFS, Audio, level_of, load_speech_detector
from uvac.audio.speech_activity import CHUNK, LEAD_CHUNKS, SPEECH_PROBABILITY


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


def _speechlike(seconds: float, *, sample_rate: int, seed: int) -> Audio:
    """A voiced, syllable-paced signal: bursts of a wobbling 200 Hz tone with harmonics."""
    time = np.arange(round(seconds * sample_rate)) / sample_rate
    pitch = 2 * np.pi * 200 * time * (1 + 0.3 * np.sin(2 * np.pi * 3 * time))
    voiced = sum(np.sin(k * pitch) / k for k in range(1, 6)) * (np.sin(2 * np.pi * 4 * time) > 0)
    hiss = 0.02 * np.random.default_rng(seed).standard_normal(time.size)
    return Audio.from_samples((0.3 * voiced + hiss).astype(np.float32), sample_rate=sample_rate)


def test_clips_detected_together_get_what_each_gets_alone() -> None:
    detector = load_speech_detector()
    clips = [
        (_speechlike(seconds, sample_rate=rate, seed=seed), [(0.0, seconds / 2), (0.0, seconds)])
        for seed, (seconds, rate) in enumerate(
            [(1.0, 44100), (3.3, 16000), (0.2, 8000), (2.0, 44100)]
        )
    ]
    together = detector.speech_shares_many(clips)
    alone = [detector.speech_shares(audio, spans) for audio, spans in clips]
    assert together == alone
    assert any(share > 0 for shares in alone for share in shares)  # not all trivially zero


def test_starting_from_the_lead_state_equals_running_the_silent_lead() -> None:
    detector = load_speech_detector()
    signal = _speechlike(1.5, sample_rate=16000, seed=7).samples
    lead = np.zeros(LEAD_CHUNKS * CHUNK, dtype=np.float32)
    with_lead = detector.chunk_probabilities(np.concatenate([lead, signal]))[LEAD_CHUNKS:]
    audio = Audio.from_samples(signal, sample_rate=16000)
    each_chunk = [
        ((index + 0.5) * CHUNK / 16000, (index + 1) * CHUNK / 16000)
        for index in range(len(with_lead))
    ]
    shares = detector.speech_shares(audio, each_chunk)
    assert shares == [float(p > SPEECH_PROBABILITY) for p in with_lead]


def test_loading_the_speech_detector_keeps_torch_s_thread_count() -> None:
    """silero-vad sets torch to one thread when imported; a fresh process that loads the
    detector keeps the count it had (every later encoder pass would run on one thread)."""
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import torch; torch.set_num_threads(2); "
        "from uvac.audio import load_speech_detector; load_speech_detector(); "
        "print(torch.get_num_threads())"
    )
    repository = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=repository,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.split()[-1] == "2"
