"""How loud a stretch of audio is, and whether it is digital silence.

Level is the RMS of the samples in dB relative to full scale (samples in [-1, 1]): a
full-scale square wave is 0 dBFS, a full-scale sine -3.01 dBFS. A stretch whose every sample
is below `SILENCE_PEAK` (half the step of 16-bit audio: zeros once quantised) is digital
silence; its level is given as `FLOOR_DBFS` rather than minus infinity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FLOOR_DBFS", "SILENCE_PEAK", "Level", "level_of"]

SILENCE_PEAK = 0.5 / 32768
FLOOR_DBFS = -120.0


@dataclass(frozen=True)
class Level:
    dbfs: float  # RMS level, at least FLOOR_DBFS
    silence: bool  # every sample below SILENCE_PEAK


def level_of(samples: np.ndarray) -> Level:
    """The level of mono float samples ``(N,)``; an empty stretch is silence.

    >>> level_of(np.ones(100, dtype=np.float32))
    Level(dbfs=0.0, silence=False)
    """
    if samples.size == 0:
        return Level(dbfs=FLOOR_DBFS, silence=True)
    values = samples.astype(np.float64)
    silence = bool(np.max(np.abs(values)) < SILENCE_PEAK)
    rms = float(np.sqrt(np.mean(values * values)))
    dbfs = 20.0 * np.log10(rms) if rms > 0 else FLOOR_DBFS
    return Level(dbfs=round(max(FLOOR_DBFS, float(dbfs)), 2), silence=silence)
