"""Audio for tests, made on the spot: tones, chirps, noise, silence, encoded files and
deliberately broken WAV headers. Importable by any test (``from tests.audio_fixtures import
tone``); nothing here reads data from outside the repository."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = [
    "chirp",
    "encode",
    "noise",
    "patch_flac_total_samples",
    "patch_wav_header",
    "silence",
    "tone",
    "wav_bytes",
    "write_audio",
]


def tone(
    frequency: float, seconds: float, *, sample_rate: int = 16000, amplitude: float = 0.5
) -> np.ndarray:
    """A sine tone, float32 (N,)."""
    time = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def chirp(
    start_hz: float,
    end_hz: float,
    seconds: float,
    *,
    sample_rate: int = 16000,
    amplitude: float = 0.5,
) -> np.ndarray:
    """A linear frequency sweep, float32 (N,)."""
    time = np.arange(round(seconds * sample_rate)) / sample_rate
    phase = 2 * np.pi * (start_hz * time + (end_hz - start_hz) * time**2 / (2 * seconds))
    return (amplitude * np.sin(phase)).astype(np.float32)


def noise(
    seconds: float, *, sample_rate: int = 16000, amplitude: float = 0.1, seed: int = 0
) -> np.ndarray:
    """Gaussian white noise, float32 (N,), reproducible by ``seed``."""
    rng = np.random.default_rng(seed)
    return (amplitude * rng.standard_normal(round(seconds * sample_rate))).astype(np.float32)


def silence(seconds: float, *, sample_rate: int = 16000) -> np.ndarray:
    """Digital silence, float32 (N,)."""
    return np.zeros(round(seconds * sample_rate), dtype=np.float32)


def encode(
    samples: np.ndarray,
    *,
    sample_rate: int = 16000,
    format: str = "WAV",
    subtype: str | None = None,
) -> bytes:
    """``samples`` (N,) or (N, C) encoded as a file in memory."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format=format, subtype=subtype)
    return buffer.getvalue()


def wav_bytes(samples: np.ndarray, *, sample_rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    """A plain RIFF WAV in memory (44-byte header: fmt at 12, data chunk header at 36)."""
    return encode(samples, sample_rate=sample_rate, format="WAV", subtype=subtype)


def write_audio(
    path: Path,
    samples: np.ndarray,
    *,
    sample_rate: int = 16000,
    format: str | None = None,
    subtype: str | None = None,
) -> Path:
    """Write ``samples`` to ``path`` (format from the extension unless given); returns path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, sample_rate, format=format, subtype=subtype)
    return path


# Byte offsets of the fields of a canonical 44-byte PCM WAV header.
WAV_FIELDS = {
    "format_tag": (20, "<H"),
    "channels": (22, "<H"),
    "sample_rate": (24, "<I"),
    "bits_per_sample": (34, "<H"),
    "data_size": (40, "<I"),
}


def patch_wav_header(wav: bytes, **fields: int) -> bytes:
    """A copy of a canonical WAV with header fields overwritten (see ``WAV_FIELDS``)."""
    if wav[36:40] != b"data":
        raise ValueError("not a canonical 44-byte-header WAV")
    patched = bytearray(wav)
    for name, value in fields.items():
        offset, layout = WAV_FIELDS[name]
        patched[offset : offset + struct.calcsize(layout)] = struct.pack(layout, value)
    return bytes(patched)


def patch_flac_total_samples(flac: bytes, total_samples: int) -> bytes:
    """A copy of a FLAC file whose STREAMINFO declares ``total_samples`` frames (36 bits)."""
    if flac[:4] != b"fLaC" or flac[4] & 0x7F != 0:
        raise ValueError("expected a FLAC file starting with its STREAMINFO block")
    patched = bytearray(flac)
    # STREAMINFO starts at byte 8; total samples are the low 4 bits of byte 21 and bytes 22-25.
    patched[21] = (patched[21] & 0xF0) | ((total_samples >> 32) & 0x0F)
    patched[22:26] = (total_samples & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(patched)
