"""The default limits agree with each other: the longest clip accepted fits in an upload."""

from __future__ import annotations

import io
import wave

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from service_config import Settings
from tests.app.conftest import make_settings
from tests.app.helpers import assert_problem


def _default(name: str) -> float:
    """The class's default, whatever this machine's environment sets."""
    value = Settings.model_fields[name].default
    assert isinstance(value, int | float)
    return value


def _wav_size(seconds: float, *, sample_rate: int, channels: int) -> int:
    """Bytes of a 16-bit PCM WAV of that length (header included)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(b"")
    return len(buffer.getvalue()) + round(seconds * sample_rate) * channels * 2


@pytest.mark.parametrize(("sample_rate", "channels"), [(44100, 2), (48000, 2), (48000, 1)])
def test_a_clip_of_the_longest_accepted_duration_fits_in_an_upload(
    sample_rate: int, channels: int
) -> None:
    size = _wav_size(_default("max_audio_seconds"), sample_rate=sample_rate, channels=channels)
    assert size <= _default("max_upload_bytes"), size


def test_a_four_minute_cd_quality_wav_is_not_refused_for_its_size() -> None:
    # What a new user tried first: 4 minutes at 44.1 kHz, 16-bit stereo (40 MiB).
    assert _wav_size(240, sample_rate=44100, channels=2) < _default("max_upload_bytes")


def test_the_dataset_413_names_its_own_setting(tmp_path, redis_db) -> None:
    settings = make_settings(tmp_path, max_dataset_upload_bytes=2048)
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/datasets", files={"file": ("a.zip", b"z" * 8192)})
    body = assert_problem(response, status=413, slug="upload-too-large")
    assert "UVAC_MAX_DATASET_UPLOAD_BYTES" in body["detail"] and "MiB" in body["detail"]
