"""Small generated recordings for the worker tests (no files from ../shared)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000


def tone(frequency: float, *, seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    """A sine at ``frequency`` Hz with a little noise, float32 (N,)."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    signal = 0.5 * np.sin(2 * np.pi * frequency * time) + 0.01 * rng.standard_normal(time.size)
    return signal.astype(np.float32)


def wav_bytes(frequency: float, *, seconds: float = 0.5, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, tone(frequency, seconds=seconds, seed=seed), SAMPLE_RATE, format="WAV")
    return buffer.getvalue()


def write_tone_folder(root: Path, *, per_class: int = 3, seconds: float = 0.5) -> Path:
    """Two classes of tones in sub-folders named by label: low/ (220 Hz) and high/ (1760 Hz)."""
    for label, frequency in (("low", 220.0), ("high", 1760.0)):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            (folder / f"{label}_{index}.wav").write_bytes(
                wav_bytes(frequency * (1 + 0.02 * index), seconds=seconds, seed=index)
            )
    return root
