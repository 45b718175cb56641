"""The valid recordings the audio fuzz cases start from: short noisy tones in every
(container, subtype) this build of libsndfile can write, made once per seed (`base_recordings`),
and the draw of one of them (`pick`)."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from benchmarks.reliability.ogg import fixed_ogg_serial

__all__ = ["RATES", "BaseRecording", "base_recordings", "pick"]

# (container, subtype) pairs to encode base recordings in; ones the local libsndfile cannot
# write are skipped.
_ENCODINGS = (
    ("WAV", "PCM_16"),
    ("WAV", "PCM_24"),
    ("WAV", "PCM_32"),
    ("WAV", "PCM_U8"),
    ("WAV", "FLOAT"),
    ("WAV", "DOUBLE"),
    ("WAV", "ULAW"),
    ("WAV", "IMA_ADPCM"),
    ("WAVEX", "PCM_16"),
    ("RF64", "PCM_16"),
    ("W64", "FLOAT"),
    ("FLAC", "PCM_16"),
    ("FLAC", "PCM_24"),
    ("OGG", "VORBIS"),
    ("OGG", "OPUS"),
    ("AIFF", "PCM_16"),
    ("AU", "FLOAT"),
    ("CAF", "PCM_16"),
    ("MP3", "MPEG_LAYER_III"),
)
RATES = (8000, 16000, 22050, 44100, 48000)
_OPUS_RATES = (8000, 16000, 48000)


@dataclass(frozen=True)
class BaseRecording:
    container: str
    subtype: str
    sample_rate: int
    channels: int
    data: bytes


def base_recordings(seed: int) -> list[BaseRecording]:
    """Short (0.05 to 0.3 s) noisy tones in every encoding libsndfile can write here."""
    rng = np.random.default_rng(seed)
    bases: list[BaseRecording] = []
    for container, subtype in _ENCODINGS:
        for channels in (1, 2):
            rates = _OPUS_RATES if subtype == "OPUS" else RATES
            rate = int(rng.choice(rates))
            frames = int(rate * rng.uniform(0.05, 0.3))
            time = np.arange(frames) / rate
            tone = 0.4 * np.sin(2 * np.pi * rng.uniform(100, 2000) * time)
            signal = tone[:, None] + 0.05 * rng.standard_normal((frames, channels))  # (F, C)
            buffer = io.BytesIO()
            try:
                sf.write(buffer, signal, rate, format=container, subtype=subtype)
            except (sf.LibsndfileError, ValueError, TypeError, RuntimeError):
                continue  # this build of libsndfile cannot write it
            data = buffer.getvalue()
            if container == "OGG":
                data = fixed_ogg_serial(data)
            bases.append(BaseRecording(container, subtype, rate, channels, data))
    return bases


def pick(
    rng: random.Random, bases: list[BaseRecording], container: str | None = None
) -> BaseRecording:
    pool = [b for b in bases if container is None or b.container == container] or bases
    return rng.choice(pool)
