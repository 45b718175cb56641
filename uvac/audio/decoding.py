"""Audio in: decode a recording with libsndfile, check it, mix it to mono, resample it.

``load_audio`` is the file boundary of the engine: everything past it sees a finite, non-empty,
mono float32 signal at the model's sample rate. Whatever is wrong with the input becomes one of
the typed errors in ``uvac.errors`` with a message a person can act on; no libsndfile or NumPy
exception escapes.

Formats: whatever libsndfile reads, in particular WAV (8/16/24/32-bit PCM, 32/64-bit float),
FLAC, Ogg Vorbis/Opus and MP3. A format is recognised by the file's first bytes, never by its
name (`sniff_format`): a recording in a container libsndfile cannot read (M4A/AAC, WebM, WMA,
...) is refused with an error that names the format, whatever its extension says.

Safety: the header is read first and a recording whose declared length exceeds
``max_seconds``, or whose samples (frames x channels, so rate x seconds x channels) exceed
``max_samples``, is refused before any sample is decoded: a compressed file of silence at a
high rate is small on the wire and huge once decoded. Samples are then decoded in bounded
blocks, each mixed to mono and resampled at once (`uvac.audio.resampling`), so memory follows
the output at the model's rate, never the input. A stream whose header does not know its
length (a FLAC or WAV written while recording) is decoded and measured, and stops at either
limit all the same. `DecodeSlots` caps how many decodes one process runs at once.
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf

from uvac.audio.resampling import StreamingResampler
from uvac.errors import (
    AudioTooLongError,
    EmptyAudioError,
    NonFiniteAudioError,
    NotAudioError,
    UnsupportedEncodingError,
)

__all__ = [
    "DECODED_FORMATS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "Audio",
    "load_audio",
    "sniff_format",
]

logger = logging.getLogger(__name__)

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000

# Samples (frames x channels) decoded per block: 4 MiB of float32 at a time.
_BLOCK_SAMPLES = 1 << 20

# libsndfile error codes that mean "a container we know, an encoding we cannot decode".
_UNSUPPORTED_ENCODING_CODES = frozenset({4, 18, 78, 92, 100, 106, 110, 117, 123, 159, 176})

# WAV format tags libsndfile decodes (PCM, ADPCM, float, A-law, mu-law, IMA ADPCM, GSM 6.10,
# G.721, extensible); any other tag in a 'fmt ' chunk is an encoding we do not support.
_WAV_TAGS_DECODED = frozenset(
    {0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011, 0x0031, 0x0040, 0xFFFE}
)


# What libsndfile reports as the frame count of a stream whose length it does not know.
_UNKNOWN_FRAMES = 2**63 - 1

# How to ask for a format we decode, in every message that refuses one.
_SEND = "Send WAV, FLAC, Ogg or MP3"

# Boxes an MP4/M4A file may start with: ftyp first as a rule, but free, skip, wide, mdat or
# moov first in files written by some tools.
_MP4_FIRST_BOXES = frozenset({b"ftyp", b"free", b"skip", b"wide", b"mdat", b"moov"})

# Formats recognised by their first bytes: the ones libsndfile decodes, and the ones it
# cannot (named in the refusal, since its own message for them is misleading).
DECODED_FORMATS = frozenset({"WAV", "FLAC", "Ogg", "MP3", "AIFF", "AU", "CAF"})
_HEAD_BYTES = 64


def sniff_format(head: bytes) -> str | None:
    """The audio format of a file from its first bytes (about 64), or None when unknown.

    One of `DECODED_FORMATS`, or the name of a format that cannot be decoded here
    ("M4A/MP4", "AAC (ADTS)", "WebM/Matroska", "WMA/ASF", "AMR", "APE", "WavPack").
    """
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    four = head[:4]
    by_magic = {
        b"fLaC": "FLAC",
        b"OggS": "Ogg",
        b".snd": "AU",
        b"caff": "CAF",
        b"\x1aE\xdf\xa3": "WebM/Matroska",
        b"0&\xb2u": "WMA/ASF",
        b"#!AM": "AMR",
        b"MAC ": "APE",
        b"wvpk": "WavPack",
    }
    if four in by_magic:
        return by_magic[four]
    if head[4:8] in _MP4_FIRST_BOXES:
        return "M4A/MP4"
    if head[:3] == b"ID3":
        return "MP3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        layer = (head[1] >> 1) & 0x03
        if layer == 0:
            return "AAC (ADTS)" if head[1] & 0xF0 == 0xF0 else None
        return "MP3"
    return None


def _sniff_stream(stream: BinaryIO) -> str | None:
    """`sniff_format` of the stream's head, looking past an ID3 tag: an ID3 tag says nothing
    of the audio behind it, which may be AAC (ADTS) or MP4 rather than MP3."""
    start = stream.tell()
    head = stream.read(_HEAD_BYTES)
    sniffed = sniff_format(head)
    if head[:3] != b"ID3" or len(head) < 10:
        return sniffed
    # The tag's size: four 7-bit bytes after the version and flags (ID3v2 "syncsafe").
    size = 0
    for byte in head[6:10]:
        size = (size << 7) | (byte & 0x7F)
    footer = 10 if head[5] & 0x10 else 0
    stream.seek(start + 10 + size + footer)
    behind = sniff_format(stream.read(_HEAD_BYTES))
    return behind if behind is not None else sniffed


@dataclass(frozen=True)
class Audio:
    """A decoded recording, mono, at ``sample_rate``.

    ``source_sample_rate`` and ``source_channels`` describe the file as it came in;
    ``duration_s`` is the length of ``samples`` at ``sample_rate``.
    """

    samples: np.ndarray  # (N,) float32, finite, N >= 1
    sample_rate: int
    source_sample_rate: int
    source_channels: int
    duration_s: float

    @classmethod
    def from_samples(cls, samples: np.ndarray, *, sample_rate: int) -> Audio:
        """Wrap an in-memory mono signal (tests, synthetic data), with the loader's checks."""
        array = np.asarray(samples, dtype=np.float32)
        if array.ndim != 1:
            raise ValueError(f"samples must be one-dimensional (mono), got shape {array.shape}")
        if array.size == 0:
            raise EmptyAudioError("The recording holds no samples.")
        if not np.isfinite(array).all():
            raise NonFiniteAudioError("The recording holds NaN or infinite samples.")
        _check_sample_rate(sample_rate)
        return cls(
            samples=array,
            sample_rate=sample_rate,
            source_sample_rate=sample_rate,
            source_channels=1,
            duration_s=array.size / sample_rate,
        )


def load_audio(
    source: bytes | str | os.PathLike[str] | BinaryIO,
    *,
    sample_rate: int,
    max_seconds: float | None = None,
    max_samples: int | None = None,
) -> Audio:
    """Decode ``source`` to mono float32 at ``sample_rate`` Hz.

    ``max_seconds`` bounds the recording's duration, ``max_samples`` what it decodes to
    (frames x channels at the file's own rate); both are checked on the header first.

    ``source`` is the file's bytes, a path, or a binary file object (read from its current
    position; a non-seekable stream is read into memory first). Raises ``NotAudioError``,
    ``UnsupportedEncodingError``, ``EmptyAudioError``, ``NonFiniteAudioError`` or
    ``AudioTooLongError``; a missing path raises ``FileNotFoundError`` as usual.

    >>> audio = load_audio(wav_bytes, sample_rate=16000, max_seconds=60)  # doctest: +SKIP
    >>> audio.samples.dtype, audio.sample_rate
    (dtype('float32'), 16000)
    """
    _check_sample_rate(sample_rate)
    limits = _Limits(max_seconds=max_seconds, max_samples=max_samples)
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            return _load_stream(file, sample_rate=sample_rate, limits=limits)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _load_stream(io.BytesIO(source), sample_rate=sample_rate, limits=limits)
    stream: BinaryIO = source if _is_seekable(source) else io.BytesIO(source.read())
    return _load_stream(stream, sample_rate=sample_rate, limits=limits)


@dataclass(frozen=True)
class _Limits:
    max_seconds: float | None
    max_samples: int | None

    def max_frames(self, *, source_rate: int, channels: int) -> int | None:
        """The most frames a file at ``source_rate`` with ``channels`` may decode to."""
        bounds = []
        if self.max_seconds is not None:
            bounds.append(math.floor(self.max_seconds * source_rate))
        if self.max_samples is not None:
            bounds.append(self.max_samples // channels)
        return min(bounds) if bounds else None

    def too_long(self, *, source_rate: int, channels: int, frames: int | None) -> AudioTooLongError:
        """The refusal of ``frames`` frames (None: a stream that ran past the limit)."""
        by_seconds = (
            None if self.max_seconds is None else math.floor(self.max_seconds * source_rate)
        )
        if frames is not None and by_seconds is not None and frames > by_seconds:
            return AudioTooLongError(
                f"The recording lasts {frames / source_rate:.1f} s; "
                f"the limit is {self.max_seconds:g} s."
            )
        if frames is None and by_seconds == self.max_frames(
            source_rate=source_rate, channels=channels
        ):
            return AudioTooLongError(
                f"The recording lasts more than {self.max_seconds:g} s, the limit."
            )
        return self._too_many_samples(source_rate=source_rate, channels=channels)

    def _too_many_samples(self, *, source_rate: int, channels: int) -> AudioTooLongError:
        return AudioTooLongError(
            f"The recording ({channels} channel(s) at {source_rate} Hz) decodes to more than "
            f"{self.max_samples} samples, the most one recording may hold (rate x seconds x "
            "channels); send it at a lower sample rate, shorter, or with fewer channels."
        )


def _load_stream(stream: BinaryIO, *, sample_rate: int, limits: _Limits) -> Audio:
    if _remaining_bytes(stream) == 0:
        raise EmptyAudioError("The file is empty (0 bytes).")
    start = stream.tell()
    sniffed = _sniff_stream(stream)
    stream.seek(start)
    if sniffed is not None and sniffed not in DECODED_FORMATS:
        raise UnsupportedEncodingError(
            f"The file is {sniffed} audio (recognised by its content, whatever its name "
            f"says), which this service cannot decode. {_SEND}; a converter such as ffmpeg "
            "turns it into one."
        )
    _refuse_truncated_wav(stream)
    try:
        sound_file = sf.SoundFile(stream)
    except sf.LibsndfileError as error:
        stream.seek(start)
        raise _open_error(error, head=stream.read(4096)) from None
    except (RuntimeError, ValueError, TypeError, OverflowError, struct.error) as error:
        raise NotAudioError(f"The file could not be read as audio ({error}).") from None

    with sound_file:
        source_rate = int(sound_file.samplerate)
        channels = int(sound_file.channels)
        declared_frames = int(sound_file.frames)
        _check_header(
            source_rate=source_rate,
            channels=channels,
            declared_frames=declared_frames,
            limits=limits,
        )
        length_known = _UNKNOWN_FRAMES > declared_frames >= 0
        resampler = StreamingResampler(
            orig_rate=source_rate,
            new_rate=sample_rate,
            expected_input=declared_frames if length_known else None,
        )
        decoded = _decode_mono(
            sound_file,
            channels=channels,
            limits=limits,
            length_known=length_known,
            consume=resampler.push,
        )
    if decoded == 0:
        raise EmptyAudioError("The recording holds no samples.")
    samples = resampler.finish()
    return Audio(
        samples=samples,
        sample_rate=sample_rate,
        source_sample_rate=source_rate,
        source_channels=channels,
        duration_s=samples.size / sample_rate,
    )


# A WAV written by a streaming encoder that does not know its length yet says so with this
# data-chunk size; such a file is complete however many bytes follow.
_STREAMING_WAV_DATA_SIZE = 0xFFFFFFFF


def _refuse_truncated_wav(stream: BinaryIO) -> None:
    """Refuse a RIFF/WAVE file whose data chunk declares more bytes than the file holds.

    libsndfile quietly decodes what is there, but an upload cut short by the network would
    then be clustered on a fragment of the recording; the sender should rather learn that
    the file arrived truncated. Leaves the stream where it found it.
    """
    start = stream.tell()
    try:
        end = stream.seek(0, io.SEEK_END)
        stream.seek(start)
        if stream.read(4) != b"RIFF":
            return
        stream.seek(start + 12)
        while True:
            header = stream.read(8)
            if len(header) < 8:
                return
            chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk_id == b"data":
                available = end - stream.tell()
                if chunk_size != _STREAMING_WAV_DATA_SIZE and available < chunk_size:
                    raise NotAudioError(
                        f"The WAV file is truncated: its header declares {chunk_size} bytes of "
                        f"audio but only {available} arrived. Send the whole file again."
                    )
                return
            stream.seek(chunk_size + (chunk_size & 1), io.SEEK_CUR)
    finally:
        stream.seek(start)


def _check_header(
    *, source_rate: int, channels: int, declared_frames: int, limits: _Limits
) -> None:
    if channels < 1:
        raise NotAudioError("The file declares zero audio channels.")
    if not MIN_SAMPLE_RATE <= source_rate <= MAX_SAMPLE_RATE:
        raise UnsupportedEncodingError(
            f"The file declares a sample rate of {source_rate} Hz; rates from "
            f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz are accepted."
        )
    if declared_frames == 0:
        raise EmptyAudioError("The recording holds no samples.")
    if declared_frames >= _UNKNOWN_FRAMES or declared_frames < 0:
        return  # a stream of unknown length: decoding measures it, within max_seconds
    max_frames = limits.max_frames(source_rate=source_rate, channels=channels)
    if max_frames is not None and declared_frames > max_frames:
        raise limits.too_long(source_rate=source_rate, channels=channels, frames=declared_frames)


def _decode_mono(
    sound_file: sf.SoundFile,
    *,
    channels: int,
    limits: _Limits,
    length_known: bool,
    consume: Callable[[np.ndarray], None],
) -> int:
    """Decode block by block, averaging channels, and hand each mono block (F,) to
    ``consume``; refuse NaN/inf and overlong streams. Returns the frames decoded."""
    source_rate = int(sound_file.samplerate)
    max_frames = limits.max_frames(source_rate=source_rate, channels=channels)
    block_frames = max(1, _BLOCK_SAMPLES // channels)
    decoded = 0
    while True:
        try:
            if length_known:
                block = sound_file.read(block_frames, dtype="float32", always_2d=True)  # (F, C)
            else:
                block = _read_without_seeking(sound_file, block_frames, channels)  # (F, C)
        except sf.LibsndfileError as error:
            raise NotAudioError(
                f"The audio data is corrupt or truncated ({error.error_string})."
            ) from None
        except (RuntimeError, ValueError, MemoryError, struct.error) as error:
            raise NotAudioError(f"The audio data could not be decoded ({error}).") from None
        if block.shape[0] == 0:
            return decoded
        if not np.isfinite(block).all():
            raise NonFiniteAudioError(
                "The recording holds NaN or infinite samples (or float values beyond the "
                "32-bit float range)."
            )
        decoded += block.shape[0]
        if max_frames is not None and decoded > max_frames:
            # The header understated the length (streams); stop decoding right here.
            raise limits.too_long(source_rate=source_rate, channels=channels, frames=None)
        consume(block.mean(axis=1, dtype=np.float32) if channels > 1 else block[:, 0])


def _read_without_seeking(sound_file: sf.SoundFile, frames: int, channels: int) -> np.ndarray:
    """Up to ``frames`` frames (F, C) through libsndfile's C read.

    `SoundFile.read` seeks to its own position after every block, and libsndfile cannot seek
    in a FLAC that does not declare its length: the seek fails and so would the read. The C
    read needs no seek. (soundfile is pinned; tests/uvac/test_audio.py covers this path.)
    """
    out = np.empty((frames, channels), dtype=np.float32)
    pointer = sf._ffi.cast("float *", out.ctypes.data)
    read = int(sf._snd.sf_readf_float(sound_file._file, pointer, frames))
    code = int(sf._snd.sf_error(sound_file._file))
    if code != 0:
        raise NotAudioError(f"The audio data is corrupt or truncated (libsndfile error {code}).")
    return out[:read]


def _check_sample_rate(sample_rate: int) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(
            f"sample_rate must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz, "
            f"got {sample_rate}"
        )


def _open_error(
    error: sf.LibsndfileError, *, head: bytes
) -> NotAudioError | UnsupportedEncodingError:
    """Translate libsndfile's refusal to open a file into our error with a human message."""
    detail = error.error_string.strip() or "unknown libsndfile error"
    if "pipe" in detail.lower():
        # libsndfile's guess for a stream it cannot seek in; a truncated file ends up here.
        detail = "its data ends early or its framing is broken"
    wav_tag = _wav_format_tag(head)
    if wav_tag is not None and wav_tag not in _WAV_TAGS_DECODED:
        return UnsupportedEncodingError(
            f"This WAV file holds an encoding we cannot decode (format tag 0x{wav_tag:04X}). "
            "Send PCM or float WAV, FLAC, Ogg or MP3."
        )
    if error.code in _UNSUPPORTED_ENCODING_CODES:
        return UnsupportedEncodingError(
            f"The file's audio encoding is not supported ({detail}). "
            "Send PCM or float WAV, FLAC, Ogg or MP3."
        )
    if error.code == 32:
        return NotAudioError("The file declares zero audio channels.")
    return NotAudioError(
        f"The file could not be read as audio ({detail}). "
        f"It may be truncated, corrupt or not audio at all. {_SEND}."
    )


def _wav_format_tag(head: bytes) -> int | None:
    """The format tag of a RIFF/WAVE 'fmt ' chunk within ``head``, if there is one."""
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return None
    endian = "<" if head[:4] == b"RIFF" else ">"
    offset = 12
    while offset + 8 <= len(head):
        chunk_id = head[offset : offset + 4]
        (chunk_size,) = struct.unpack(endian + "I", head[offset + 4 : offset + 8])
        if chunk_id == b"fmt ":
            if offset + 10 > len(head):
                return None
            (tag,) = struct.unpack(endian + "H", head[offset + 8 : offset + 10])
            return int(tag)
        offset += 8 + chunk_size + (chunk_size & 1)
    return None


def _is_seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _remaining_bytes(stream: BinaryIO) -> int:
    position = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(position)
    return end - position
