"""Generated inputs for the audio loader: valid recordings, then every way to break them.

Case ``i`` of a run is a pure function of ``(seed, i)``: a crash found in a child process can
be regenerated and described by the parent (and by a person rerunning the script) from its
index alone. The base recordings (small WAV/FLAC/Ogg/AIFF/... files in several sample
formats) are made once per seed; each case picks one and mutates it, or makes bytes from
scratch.

The base recordings are `benchmarks.reliability.recordings`, the WAV/RIFF mutators
`benchmarks.reliability.wav_mutations` (Ogg page helpers: `benchmarks.reliability.ogg`);
this module holds the other mutators, their weights and `make_case`.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from benchmarks.reliability.recordings import RATES, BaseRecording, base_recordings, pick
from benchmarks.reliability.wav_mutations import (
    handmade_wav,
    wav_data_size,
    wav_extra_chunks,
    wav_header_field,
    wav_with_raw_header,
)

__all__ = ["MUTATORS", "BaseRecording", "FuzzCase", "base_recordings", "make_case"]


@dataclass(frozen=True)
class FuzzCase:
    index: int
    kind: str  # the mutator's name
    description: str  # what exactly was done, for the crash report
    data: bytes
    load_sample_rate: int
    max_seconds: float | None


# --- mutators: (rng, bases) -> (description, bytes) --------------------------------------

Mutator = Callable[[random.Random, list[BaseRecording]], tuple[str, bytes]]


def _random_length(rng: random.Random, upper: int = 65536) -> int:
    # Log-uniform: many tiny inputs (0 to 44 bytes is where header parsers break), some big.
    return int(2 ** rng.uniform(0, np.log2(upper)))


def random_bytes(rng: random.Random, bases: list[BaseRecording]) -> tuple[str, bytes]:
    size = _random_length(rng)
    return f"{size} random bytes", rng.randbytes(size)


def magic_then_random(rng: random.Random, bases: list[BaseRecording]) -> tuple[str, bytes]:
    """A real container signature followed by garbage: gets past format sniffing."""
    magics = (
        b"RIFF\xff\xff\xff\xffWAVE",
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        b"fLaC",
        b"fLaC\x00\x00\x00\x22",
        b"OggS\x00\x02",
        b"FORM\x00\x00\x00\x00AIFF",
        b".snd",
        b"caff\x00\x01\x00\x00",
        b"RF64\xff\xff\xff\xffWAVEds64",
        b"ID3\x04\x00",
        b"\xff\xfb\x90\x00",
        b"riff.\x91\xcf\x11",
    )
    magic = rng.choice(magics)
    size = _random_length(rng, 8192)
    return f"magic {magic[:8]!r} + {size} random bytes", magic + rng.randbytes(size)


def truncated(rng: random.Random, bases: list[BaseRecording]) -> tuple[str, bytes]:
    base = pick(rng, bases)
    # Half the cuts inside the first 128 bytes (headers), half anywhere.
    cut = (
        rng.randrange(0, min(len(base.data), 128))
        if rng.random() < 0.5
        else rng.randrange(0, len(base.data))
    )
    return f"{base.container}/{base.subtype} ({len(base.data)} B) cut at {cut}", base.data[:cut]


def byte_flips(rng: random.Random, bases: list[BaseRecording]) -> tuple[str, bytes]:
    base = pick(rng, bases)
    data = bytearray(base.data)
    flips = rng.choice((1, 1, 2, 4, 16, 64))
    in_header = rng.random() < 0.6
    positions = []
    for _ in range(flips):
        limit = min(len(data), 256) if in_header else len(data)
        position = rng.randrange(limit)
        data[position] = rng.randrange(256)
        positions.append(position)
    return f"{base.container}/{base.subtype}: {flips} byte(s) changed at {positions[:8]}", bytes(
        data
    )


def non_finite_floats(rng: random.Random, bases: list[BaseRecording]) -> tuple[str, bytes]:
    """Float WAVs holding NaN, +-inf, or doubles beyond the float32 range."""
    rate = rng.choice(RATES)
    frames = rng.randrange(1, 4000)
    channels = rng.choice((1, 2))
    signal = 0.1 * np.ones((frames, channels))
    poison = rng.choice(("nan", "inf", "-inf", "1e300", "all-nan", "denormal"))
    if poison == "all-nan":
        signal[:] = np.nan
    elif poison == "denormal":
        signal[:] = 1e-45
    else:
        for _ in range(rng.randrange(1, 8)):
            signal[rng.randrange(frames), rng.randrange(channels)] = float(poison)
    subtype = (
        "FLOAT" if poison in ("nan", "inf", "-inf", "all-nan") and rng.random() < 0.5 else "DOUBLE"
    )
    buffer = io.BytesIO()
    sf.write(buffer, signal, rate, format="WAV", subtype=subtype)
    return f"{subtype} WAV {frames}x{channels} with {poison}", buffer.getvalue()


def extreme_rates(rng: random.Random, bases: list[BaseRecording]) -> tuple[str, bytes]:
    """Well-formed WAVs at odd or extreme sample rates (resampler kernels)."""
    rate = rng.choice(
        (
            1,
            2,
            100,
            999,
            1000,
            1001,
            7999,
            11025,
            44101,
            96000,
            192000,
            384000,
            767999,
            768000,
            768001,
            10**7,
            2**31 - 1,
        )
    )
    frames = rng.randrange(1, 2000)
    signal = 0.1 * np.sin(np.arange(frames) * 0.1)
    buffer = io.BytesIO()
    try:
        sf.write(buffer, signal, rate, format="WAV", subtype="PCM_16")
    except (sf.LibsndfileError, ValueError, OverflowError):
        data = wav_with_raw_header(rate=rate, frames=frames)
        return f"hand-made PCM_16 WAV at {rate} Hz, {frames} frames", data
    return f"PCM_16 WAV at {rate} Hz, {frames} frames", buffer.getvalue()


def compressed_corruption(rng: random.Random, bases: list[BaseRecording]) -> tuple[str, bytes]:
    """FLAC/Ogg/MP3 with flipped bytes in the frames, swapped pages or a repeated tail."""
    compressed = [b for b in bases if b.container in ("FLAC", "OGG", "MP3")] or bases
    base = rng.choice(compressed)
    data = bytearray(base.data)
    how = rng.choice(("flip-body", "flip-header", "zero-run", "duplicate", "splice"))
    if how == "flip-body":
        for _ in range(rng.randrange(1, 32)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == "flip-header":
        position = rng.randrange(min(len(data), 64))
        data[position] ^= 0xFF
    elif how == "zero-run":
        start = rng.randrange(len(data))
        data[start : start + rng.randrange(1, 512)] = bytes(min(len(data) - start, 512))
    elif how == "duplicate":
        start = rng.randrange(len(data))
        data = data + data[start:]
    else:
        other = rng.choice(compressed)
        cut = rng.randrange(len(data))
        data = data[:cut] + other.data[rng.randrange(len(other.data)) :]
    return f"{base.container}/{base.subtype}: {how}", bytes(data)


def valid(rng: random.Random, bases: list[BaseRecording]) -> tuple[str, bytes]:
    """Unchanged base recordings: the loader must decode these."""
    base = pick(rng, bases)
    return (
        f"valid {base.container}/{base.subtype} {base.sample_rate} Hz x{base.channels}",
        base.data,
    )


MUTATORS: dict[str, Mutator] = {
    "random-bytes": random_bytes,
    "magic-then-random": magic_then_random,
    "truncated": truncated,
    "byte-flips": byte_flips,
    "wav-header-field": wav_header_field,
    "wav-data-size": wav_data_size,
    "wav-extra-chunks": wav_extra_chunks,
    "non-finite-floats": non_finite_floats,
    "extreme-rates": extreme_rates,
    "handmade-wav": handmade_wav,
    "compressed-corruption": compressed_corruption,
    "valid": valid,
}
# Relative frequencies: the header mutators find the most bugs.
_WEIGHTS = {
    "random-bytes": 1,
    "magic-then-random": 1,
    "truncated": 2,
    "byte-flips": 2,
    "wav-header-field": 3,
    "wav-data-size": 2,
    "wav-extra-chunks": 2,
    "non-finite-floats": 1,
    "extreme-rates": 1,
    "handmade-wav": 2,
    "compressed-corruption": 2,
    "valid": 1,
}


def make_case(index: int, *, seed: int, bases: list[BaseRecording]) -> FuzzCase:
    rng = random.Random(f"{seed}:{index}")
    kind = rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()))[0]
    description, data = MUTATORS[kind](rng, bases)
    return FuzzCase(
        index=index,
        kind=kind,
        description=description,
        data=data,
        load_sample_rate=rng.choice((8000, 16000)),
        max_seconds=rng.choice((None, 30.0, 0.1)),
    )
