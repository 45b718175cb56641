"""WAV/RIFF byte surgery for the audio fuzz cases: header fields set to boundary values, data
chunks that declare the wrong length, extra chunks with lying sizes, and WAVs written field by
field (`wav_with_raw_header`, `handmade_wav`). Each mutator is ``(rng, bases) -> (description,
bytes)``, as `benchmarks.reliability.fuzz_cases.MUTATORS` calls it."""

from __future__ import annotations

import random
import struct

from benchmarks.reliability.recordings import BaseRecording, pick

__all__ = [
    "handmade_wav",
    "wav_data_size",
    "wav_extra_chunks",
    "wav_header_field",
    "wav_with_raw_header",
]

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


def _wav_bases(bases: list[BaseRecording]) -> list[BaseRecording]:
    return [b for b in bases if b.container in ("WAV", "WAVEX")]


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
    base = pick(rng, _wav_bases(bases) or bases)
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
    base = pick(rng, _wav_bases(bases) or bases)
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
    base = pick(rng, _wav_bases(bases) or bases)
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
