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


def noise(*, seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    """White noise at about -10 dBFS, float32 (N,)."""
    return (
        np.random.default_rng(seed).normal(0.0, 0.3, int(seconds * SAMPLE_RATE)).astype(np.float32)
    )


def write_unlabelled_recordings(
    root: Path, *, count: int = 12, tones_held_out: bool = False, seconds: float = 0.5
) -> Path:
    """``count`` recordings of noise in one folder, with no label (names without an
    underscore, no labels.csv). With ``tones_held_out`` the
    recordings a training job holds out (`uvac.audio.held_out_split` at the default share,
    decided by their paths) are tones instead: a sound the training part never has."""
    from uvac.audio import DEFAULT_HELD_OUT_SHARE, DatasetItem, held_out_split

    root.mkdir(parents=True, exist_ok=True)
    names = [f"recording{index:02d}.wav" for index in range(count)]
    items = [DatasetItem(path=root / name, label=None, relpath=name) for name in names]
    held_out = set(held_out_split(items, share=DEFAULT_HELD_OUT_SHARE).held_out_paths)
    for index, name in enumerate(names):
        if tones_held_out and name in held_out:
            samples = tone(440.0 * (1 + 0.5 * index / count), seconds=seconds, seed=index)
        else:
            samples = noise(seconds=seconds, seed=index)
        buffer = io.BytesIO()
        sf.write(buffer, samples, SAMPLE_RATE, format="WAV")
        (root / name).write_bytes(buffer.getvalue())
    return root
