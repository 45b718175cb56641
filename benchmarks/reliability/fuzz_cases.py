"""Generated inputs for the audio loader: valid recordings, then every way to break them.

Case ``i`` of a run is a pure function of ``(seed, i)``: a crash found in a child process can
be regenerated and described by the parent (and by a person rerunning the script) from its
index alone. The base recordings (small WAV/FLAC/Ogg/AIFF/... files in several sample
formats) are made once per seed; each case picks one and mutates it, or makes bytes from
scratch.
"""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import soundfile as sf

__all__ = ["MUTATORS", "BaseRecording", "FuzzCase", "base_recordings", "make_case"]

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
_RATES = (8000, 16000, 22050, 44100, 48000)
_OPUS_RATES = (8000, 16000, 48000)

# Interesting values for header fields (WAV 'fmt ' chunk and friends).
_U16_SPECIALS = (0, 1, 2, 3, 7, 8, 255, 256, 32767, 32768, 65534, 65535)
_U32_SPECIALS = (0, 1, 2, 999, 1000, 44101, 768000, 768001, 2**31 - 1, 2**31, 2**32 - 1)
_FORMAT_TAGS = (
    0x0000,
    0x0001,
    0x0002,
    0x0003,
    0x0006,
    0x0007,
    0x0011,
    0x0055,
    0x00FF,
    0xFFFE,
    0xFFFF,
)


@dataclass(frozen=True)
class BaseRecording:
    container: str
    subtype: str
    sample_rate: int
    channels: int
    data: bytes


@dataclass(frozen=True)
class FuzzCase:
    index: int
    kind: str  # the mutator's name
    description: str  # what exactly was done, for the crash report
    data: bytes
    load_sample_rate: int
    max_seconds: float | None


def base_recordings(seed: int) -> list[BaseRecording]:
    """Short (0.05 to 0.3 s) noisy tones in every encoding libsndfile can write here."""
    rng = np.random.default_rng(seed)
    bases: list[BaseRecording] = []
    for container, subtype in _ENCODINGS:
        for channels in (1, 2):
            rates = _OPUS_RATES if subtype == "OPUS" else _RATES
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
                data = _fixed_ogg_serial(data)
            bases.append(BaseRecording(container, subtype, rate, channels, data))
    return bases


def _ogg_crc(page: bytes) -> int:
    """Ogg's page checksum: CRC-32, polynomial 0x04C11DB7, not reflected, initial 0."""
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
            crc &= 0xFFFFFFFF
    return crc


def _fixed_ogg_serial(data: bytes, serial: int = 0x5EED) -> bytes:
    """libsndfile picks a random Ogg stream serial; fix it so cases are reproducible."""
    pages = bytearray()
    offset = 0
    while offset + 27 <= len(data) and data[offset : offset + 4] == b"OggS":
        segments = data[offset + 26]
        length = 27 + segments + sum(data[offset + 27 : offset + 27 + segments])
        page = bytearray(data[offset : offset + length])
        struct.pack_into("<I", page, 14, serial)
        struct.pack_into("<I", page, 22, 0)
        struct.pack_into("<I", page, 22, _ogg_crc(bytes(page)))
        pages += page
        offset += length
    return bytes(pages) + data[offset:]


# --- mutators: (rng, bases) -> (description, bytes) --------------------------------------

Mutator = Callable[[random.Random, list[BaseRecording]], tuple[str, bytes]]


def _pick(
    rng: random.Random, bases: list[BaseRecording], container: str | None = None
) -> BaseRecording:
    pool = [b for b in bases if container is None or b.container == container] or bases
    return rng.choice(pool)


def _wav_bases(bases: list[BaseRecording]) -> list[BaseRecording]:
    return [b for b in bases if b.container in ("WAV", "WAVEX")]


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
    base = _pick(rng, bases)
    # Half the cuts inside the first 128 bytes (headers), half anywhere.
    cut = (
        rng.randrange(0, min(len(base.data), 128))
        if rng.random() < 0.5
        else rng.randrange(0, len(base.data))
    )
    return f"{base.container}/{base.subtype} ({len(base.data)} B) cut at {cut}", base.data[:cut]


def byte_flips(rng: random.Random, bases: list[BaseRecording]) -> tuple[str, bytes]:
    base = _pick(rng, bases)
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


def _riff_chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(offset, id, size) of each top-level chunk of a RIFF file."""
    chunks = []
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        chunks.append((offset, chunk_id, size))
        offset += 8 + size + (size & 1)
    return chunks


def _chunk(data: bytes, chunk_id: bytes) -> int | None:
    for offset, found, _ in _riff_chunks(data):
        if found == chunk_id:
            return offset
    return None


def wav_header_field(rng: random.Random, bases: list[BaseRecording]) -> tuple[str, bytes]:
    """One field of the RIFF/fmt header set to a boundary value."""
    base = _pick(rng, _wav_bases(bases) or bases)
    data = bytearray(base.data)
    fmt = _chunk(bytes(data), b"fmt ")
    if fmt is None:
        return "no fmt chunk; random bytes instead", rng.randbytes(64)
    body = fmt + 8
    fields = {
        "riff_size": (4, "I"),
        "fmt_size": (fmt + 4, "I"),
        "format_tag": (body, "H"),
        "channels": (body + 2, "H"),
        "sample_rate": (body + 4, "I"),
        "byte_rate": (body + 8, "I"),
        "block_align": (body + 12, "H"),
        "bits_per_sample": (body + 14, "H"),
    }
    name = rng.choice(list(fields))
    offset, code = fields[name]
    if name == "format_tag":
        value = rng.choice(_FORMAT_TAGS)
    elif code == "H":
        value = rng.choice(_U16_SPECIALS) if rng.random() < 0.8 else rng.randrange(2**16)
    else:
        value = rng.choice(_U32_SPECIALS) if rng.random() < 0.8 else rng.randrange(2**32)
    struct.pack_into("<" + code, data, offset, value)
    return f"{base.container}/{base.subtype}: {name} = {value}", bytes(data)


def wav_data_size(rng: random.Random, bases: list[BaseRecording]) -> tuple[str, bytes]:
    """The data chunk declares too much, too little, an odd or a huge length."""
    base = _pick(rng, _wav_bases(bases) or bases)
    data = bytearray(base.data)
    offset = _chunk(bytes(data), b"data")
    if offset is None:
        return "no data chunk; random bytes instead", rng.randbytes(64)
    (actual,) = struct.unpack_from("<I", data, offset + 4)
    value = rng.choice(
        (
            0,
            1,
            3,
            actual - 1,
            actual + 1,
            actual * 2,
            2**31 - 1,
            2**31,
            2**32 - 1,
            rng.randrange(2**32),
        )
    )
    value = max(0, min(value, 2**32 - 1))
    struct.pack_into("<I", data, offset + 4, value)
    return f"{base.container}/{base.subtype}: data size {actual} -> {value}", bytes(data)


def wav_extra_chunks(rng: random.Random, bases: list[BaseRecording]) -> tuple[str, bytes]:
    """Chunks with lying sizes before or after 'fmt '/'data' (LIST, junk, a second fmt)."""
    base = _pick(rng, _wav_bases(bases) or bases)
    chunk_id = rng.choice(
        (b"LIST", b"JUNK", b"fact", b"fmt ", b"data", b"cue ", b"\x00\x00\x00\x00")
    )
    payload = rng.randbytes(rng.randrange(0, 64))
    declared = rng.choice(
        (len(payload), 0, len(payload) + 1, 2**31, 2**32 - 1, rng.randrange(2**32))
    )
    chunk = chunk_id + struct.pack("<I", declared) + payload
    position = rng.choice((12, len(base.data)))
    data = base.data[:position] + chunk + base.data[position:]
    return (
        f"{base.container}/{base.subtype}: {chunk_id!r} chunk (size {declared}) at {position}",
        data,
    )


def non_finite_floats(rng: random.Random, bases: list[BaseRecording]) -> tuple[str, bytes]:
    """Float WAVs holding NaN, +-inf, or doubles beyond the float32 range."""
    rate = rng.choice(_RATES)
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


def wav_with_raw_header(
    *, rate: int, frames: int, channels: int = 1, bits: int = 16, tag: int = 1
) -> bytes:
    block_align = channels * max(1, bits // 8)
    data = bytes(frames * block_align)
    fmt = struct.pack(
        "<HHIIHH",
        tag,
        channels,
        rate % 2**32,
        (rate * block_align) % 2**32,
        block_align % 2**16,
        bits,
    )
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def handmade_wav(rng: random.Random, bases: list[BaseRecording]) -> tuple[str, bytes]:
    """A minimal WAV built field by field from boundary values (zero channels and friends)."""
    channels = rng.choice((0, 1, 2, 3, 8, 255, 65535))
    bits = rng.choice((0, 1, 4, 8, 12, 16, 20, 24, 32, 33, 64, 65535))
    tag = rng.choice(_FORMAT_TAGS)
    rate = rng.choice((0, 1, 8000, 16000, 768001, 2**32 - 1))
    frames = rng.choice((0, 1, 2, 100))
    try:
        data = wav_with_raw_header(rate=rate, frames=frames, channels=channels, bits=bits, tag=tag)
    except (struct.error, MemoryError):
        data = b"RIFF"
    return (
        f"hand-made WAV tag={tag:#x} channels={channels} bits={bits} rate={rate} frames={frames}",
        data,
    )


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
    base = _pick(rng, bases)
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
