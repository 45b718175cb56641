"""uvac.audio.decoding: decoding, mixing, resampling and every kind of bad input; uvac.errors."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.audio_fixtures import (
    encode,
    noise,
    patch_flac_total_samples,
    patch_wav_header,
    silence,
    tone,
    wav_bytes,
    write_audio,
)
from uvac import errors
from uvac.audio.decoding import Audio, load_audio
from uvac.errors import (
    AudioError,
    AudioTooLongError,
    EmptyAudioError,
    NonFiniteAudioError,
    NotAudioError,
    UnsupportedEncodingError,
    UvacError,
)

RATE = 16000


def dominant_frequency(samples: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, d=1 / sample_rate)[np.argmax(spectrum)])


# --- good input -------------------------------------------------------------------------------

# (subtype, tolerance): quantisation error of each WAV subtype at amplitude 0.5
WAV_SUBTYPES = [
    ("PCM_U8", 1 / 64),
    ("PCM_16", 1e-4),
    ("PCM_24", 1e-6),
    ("PCM_32", 1e-6),
    ("FLOAT", 0.0),
    ("DOUBLE", 1e-7),
]


@pytest.mark.parametrize(("subtype", "tolerance"), WAV_SUBTYPES)
def test_every_wav_subtype_decodes_to_the_same_signal(subtype: str, tolerance: float) -> None:
    original = tone(440, 0.25)
    audio = load_audio(wav_bytes(original, subtype=subtype), sample_rate=RATE)
    assert audio.samples.dtype == np.float32
    assert audio.samples.shape == original.shape
    np.testing.assert_allclose(audio.samples, original, atol=tolerance)
    assert audio.source_sample_rate == RATE
    assert audio.source_channels == 1
    assert audio.duration_s == pytest.approx(0.25)


def test_flac_is_lossless() -> None:
    original = tone(440, 0.25)
    audio = load_audio(encode(original, format="FLAC", subtype="PCM_16"), sample_rate=RATE)
    np.testing.assert_allclose(audio.samples, original, atol=1e-4)


@pytest.mark.parametrize("subtype", ["VORBIS", "OPUS"])
def test_ogg_decodes_with_the_tone_preserved(subtype: str) -> None:
    rate = 48000  # Opus only accepts a few rates; 48 kHz also exercises resampling
    original = tone(1000, 0.5, sample_rate=rate)
    audio = load_audio(
        encode(original, sample_rate=rate, format="OGG", subtype=subtype), sample_rate=RATE
    )
    assert audio.source_sample_rate == rate
    assert audio.sample_rate == RATE
    assert audio.duration_s == pytest.approx(0.5, abs=0.03)  # codec priming may trim a little
    assert dominant_frequency(audio.samples, RATE) == pytest.approx(1000, abs=10)


@pytest.mark.parametrize("channels", [2, 3, 6])
def test_channels_are_averaged_to_mono(channels: int) -> None:
    signal = tone(440, 0.1)
    # channel c carries c * signal: the mean is signal * (channels - 1) / 2
    multichannel = np.stack([signal * c / channels for c in range(channels)], axis=1)
    audio = load_audio(wav_bytes(multichannel, subtype="FLOAT"), sample_rate=RATE)
    assert audio.samples.shape == signal.shape
    assert audio.source_channels == channels
    np.testing.assert_allclose(audio.samples, signal * (channels - 1) / 2 / channels, atol=1e-6)


@pytest.mark.parametrize("source_rate", [8000, 16000, 22050, 44100, 48000, 96000])
def test_resampling_to_16k_keeps_duration_and_pitch(source_rate: int) -> None:
    seconds = 0.75
    original = tone(1000, seconds, sample_rate=source_rate)
    audio = load_audio(
        wav_bytes(original, sample_rate=source_rate, subtype="FLOAT"), sample_rate=RATE
    )
    assert audio.sample_rate == RATE
    assert audio.source_sample_rate == source_rate
    assert abs(audio.samples.size - seconds * RATE) <= 1
    assert audio.duration_s == pytest.approx(seconds, abs=1 / RATE)
    assert dominant_frequency(audio.samples, RATE) == pytest.approx(1000, abs=3)
    # amplitude survives (away from the edges, where the filter sees zeros)
    middle = audio.samples[RATE // 10 : -RATE // 10]
    assert np.abs(middle).max() == pytest.approx(0.5, abs=0.01)


def test_resampling_to_another_target_rate() -> None:
    audio = load_audio(wav_bytes(tone(440, 0.5), subtype="FLOAT"), sample_rate=8000)
    assert audio.sample_rate == 8000
    assert audio.samples.size == 4000


def test_unusual_rate_is_resampled_through_an_approximate_ratio() -> None:
    # 44101 and 16000 are coprime: the exact sinc kernel would take gigabytes.
    seconds = 0.5
    original = tone(1000, seconds, sample_rate=44101)
    audio = load_audio(wav_bytes(original, sample_rate=44101, subtype="FLOAT"), sample_rate=RATE)
    assert audio.samples.size == pytest.approx(seconds * RATE, rel=1e-3)
    assert dominant_frequency(audio.samples, RATE) == pytest.approx(1000, abs=3)


def test_sources_bytes_path_file_object_and_unseekable_stream(tmp_path: Path) -> None:
    original = noise(0.2)
    data = wav_bytes(original, subtype="FLOAT")
    path = tmp_path / "clip.wav"
    path.write_bytes(data)

    class Unseekable(io.RawIOBase):
        def __init__(self, payload: bytes) -> None:
            self._inner = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            chunk = self._inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    with path.open("rb") as handle:
        from_handle = load_audio(handle, sample_rate=RATE)
    sources = [
        data,
        bytearray(data),
        str(path),
        path,
        io.BytesIO(data),
        io.BufferedReader(Unseekable(data)),
    ]
    for source in sources:
        audio = load_audio(source, sample_rate=RATE)  # type: ignore[arg-type]
        np.testing.assert_array_equal(audio.samples, original)
    np.testing.assert_array_equal(from_handle.samples, original)


def test_file_object_is_read_from_its_current_position() -> None:
    original = noise(0.1)
    stream = io.BytesIO(b"JUNK" + wav_bytes(original, subtype="FLOAT"))
    stream.seek(4)
    np.testing.assert_array_equal(load_audio(stream, sample_rate=RATE).samples, original)


def test_silence_is_valid_audio() -> None:
    audio = load_audio(wav_bytes(silence(0.1)), sample_rate=RATE)
    assert audio.samples.size == 1600
    assert not audio.samples.any()


def test_missing_path_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "absent.wav", sample_rate=RATE)


def test_target_rate_out_of_range_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(wav_bytes(tone(440, 0.1)), sample_rate=10)


# --- bad input --------------------------------------------------------------------------------

GOOD_WAV = wav_bytes(tone(440, 0.1))


def flac_declaring_days_of_audio() -> bytes:
    return patch_flac_total_samples(encode(tone(440, 0.2), format="FLAC"), 2**36 - 1)


BAD_INPUTS = {
    "empty bytes": (b"", EmptyAudioError),
    "zero-length wav": (wav_bytes(np.zeros(0, dtype=np.float32)), EmptyAudioError),
    "truncated header": (GOOD_WAV[:30], NotAudioError),
    "random bytes": (np.random.default_rng(1).bytes(5000), NotAudioError),
    "text file": (b"path,label\nclip.wav,dog\n" * 50, NotAudioError),
    "json file": (b'{"samples": [0.1, 0.2, 0.3]}', NotAudioError),
    "zero channels": (patch_wav_header(GOOD_WAV, channels=0), NotAudioError),
    "zero sample rate": (patch_wav_header(GOOD_WAV, sample_rate=0), NotAudioError),
    "sample rate 100 Hz": (patch_wav_header(GOOD_WAV, sample_rate=100), UnsupportedEncodingError),
    "sample rate 4 MHz": (
        patch_wav_header(GOOD_WAV, sample_rate=4_000_000),
        UnsupportedEncodingError,
    ),
    "unknown wav format tag": (
        patch_wav_header(GOOD_WAV, format_tag=0x1234),
        UnsupportedEncodingError,
    ),
    "mp3-in-wav format tag": (
        patch_wav_header(GOOD_WAV, format_tag=0x0055),
        UnsupportedEncodingError,
    ),
    "64-bit integer pcm": (
        patch_wav_header(GOOD_WAV, bits_per_sample=64),
        UnsupportedEncodingError,
    ),
    "nan float wav": (
        wav_bytes(np.array([0.1, np.nan, 0.2], np.float32), subtype="FLOAT"),
        NonFiniteAudioError,
    ),
    "inf float wav": (
        wav_bytes(np.array([0.1, np.inf, 0.2], np.float32), subtype="FLOAT"),
        NonFiniteAudioError,
    ),
    "-inf double wav": (wav_bytes(np.array([0.0, -np.inf]), subtype="DOUBLE"), NonFiniteAudioError),
    "double beyond float32": (
        wav_bytes(np.array([0.0, 1e300]), subtype="DOUBLE"),
        NonFiniteAudioError,
    ),
    "flac truncated after its header declared days": (
        flac_declaring_days_of_audio(),
        NotAudioError,
    ),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_raises_its_typed_error_with_a_human_message(name: str) -> None:
    data, expected = BAD_INPUTS[name]
    with pytest.raises(expected) as caught:
        load_audio(data, sample_rate=RATE, max_seconds=None)
    error = caught.value
    assert isinstance(error, AudioError)
    assert len(str(error)) > 15 and "Traceback" not in str(error)
    # no library exception chained into what the user sees
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def test_bad_file_on_disk_raises_the_same_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudioError):
        load_audio(path, sample_rate=RATE)
    path.write_bytes(b"not audio at all, just some text\n" * 10)
    with pytest.raises(NotAudioError):
        load_audio(path, sample_rate=RATE)


def test_huge_declared_data_chunk_is_refused_as_truncated() -> None:
    lying = patch_wav_header(wav_bytes(tone(440, 0.1)), data_size=0xFFFFFFF0)
    with pytest.raises(NotAudioError, match="truncated"):
        load_audio(lying, sample_rate=RATE)


@pytest.mark.parametrize("cut_fraction", [0.1, 0.5, 0.99])
def test_wav_cut_inside_its_data_is_refused_as_truncated(cut_fraction: float) -> None:
    whole = wav_bytes(tone(440, 0.5))
    with pytest.raises(NotAudioError, match="truncated"):
        load_audio(whole[: int(len(whole) * cut_fraction)], sample_rate=RATE)


def test_streaming_wav_with_unknown_length_decodes_what_is_there() -> None:
    original = tone(440, 0.1)
    streamed = patch_wav_header(wav_bytes(original), data_size=0xFFFFFFFF)
    audio = load_audio(streamed, sample_rate=RATE)
    np.testing.assert_allclose(audio.samples, original, atol=1e-4)


def test_wav_with_chunks_before_its_data_still_loads() -> None:
    original = tone(440, 0.1)
    plain = wav_bytes(original)
    data_at = plain.index(b"data")
    odd_chunk = b"LIST" + struct.pack("<I", 3) + b"abc" + b"\x00"  # odd size: one pad byte
    with_list = plain[:data_at] + odd_chunk + plain[data_at:]
    riff_size = struct.pack("<I", len(with_list) - 8)
    with_list = with_list[:4] + riff_size + with_list[8:]
    audio = load_audio(with_list, sample_rate=RATE)
    np.testing.assert_allclose(audio.samples, original, atol=1e-4)


def test_flac_of_unknown_length_is_decoded_and_measured() -> None:
    # A FLAC written while recording says 0 samples: "unknown" (libsndfile: 2**63 - 1 frames).
    flac = patch_flac_total_samples(encode(tone(440, 0.5), format="FLAC"), 0)
    assert sf.info(io.BytesIO(flac)).frames == 2**63 - 1

    audio = load_audio(flac, sample_rate=RATE, max_seconds=600)

    assert audio.duration_s == pytest.approx(0.5, abs=1e-3)
    assert dominant_frequency(audio.samples, RATE) == pytest.approx(440, abs=5)
    with pytest.raises(AudioTooLongError, match=r"more than 0\.2 s"):
        load_audio(flac, sample_rate=RATE, max_seconds=0.2)


def test_mp3_decodes_with_the_tone_preserved() -> None:
    mp3 = encode(tone(440, 1.0), format="MP3", subtype="MPEG_LAYER_III")
    audio = load_audio(mp3, sample_rate=RATE)
    assert audio.duration_s == pytest.approx(1.0, abs=0.1)
    assert dominant_frequency(audio.samples, RATE) == pytest.approx(440, abs=5)


# First bytes of formats libsndfile cannot read, as phones, browsers and players write them.
UNDECODABLE_HEADS = {
    "M4A/MP4": b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00isomiso2",
    "AAC (ADTS)": b"\xff\xf1\x50\x80\x02\x1f\xfc\x21\x00\x49\x90\x02\x19",
    "WebM/Matroska": b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81\x01",
    "WMA/ASF": b"0&\xb2u\x8ef\xcf\x11\xa6\xd9\x00\xaa\x00b\xce\x6c",
}


@pytest.mark.parametrize("fmt", list(UNDECODABLE_HEADS))
def test_an_undecodable_format_is_refused_by_name_whatever_the_file_is_called(
    fmt: str, tmp_path: Path
) -> None:
    data = UNDECODABLE_HEADS[fmt] + bytes(4096)
    path = tmp_path / "recording.mp3"  # the extension lies
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(UnsupportedEncodingError) as caught:
            load_audio(source, sample_rate=RATE)
        assert fmt in str(caught.value)
        assert "MP3" in str(caught.value)  # what to send instead


def test_the_content_decides_not_the_name(tmp_path: Path) -> None:
    path = tmp_path / "really-a-wav.mp3"
    path.write_bytes(wav_bytes(tone(440, 0.1)))
    assert load_audio(path, sample_rate=RATE).duration_s == pytest.approx(0.1)


def test_too_long_by_header_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("samples were decoded")

    monkeypatch.setattr(sf.SoundFile, "read", no_decoding)
    with pytest.raises(AudioTooLongError, match=r"limit is 60 s"):
        load_audio(flac_declaring_days_of_audio(), sample_rate=RATE, max_seconds=60)
    with pytest.raises(AudioTooLongError):
        load_audio(wav_bytes(tone(440, 2.0)), sample_rate=RATE, max_seconds=1.5)


def test_duration_limit_boundary() -> None:
    data = wav_bytes(tone(440, 1.0))
    assert load_audio(data, sample_rate=RATE, max_seconds=1.0).duration_s == pytest.approx(1.0)
    with pytest.raises(AudioTooLongError):
        load_audio(data, sample_rate=RATE, max_seconds=0.999)


def test_audio_from_samples_checks_like_the_loader() -> None:
    audio = Audio.from_samples(np.ones(160, dtype=np.float64), sample_rate=RATE)
    assert audio.samples.dtype == np.float32
    assert audio.duration_s == pytest.approx(0.01)
    with pytest.raises(EmptyAudioError):
        Audio.from_samples(np.zeros(0), sample_rate=RATE)
    with pytest.raises(NonFiniteAudioError):
        Audio.from_samples(np.array([0.0, np.nan]), sample_rate=RATE)
    with pytest.raises(ValueError, match="mono"):
        Audio.from_samples(np.zeros((10, 2)), sample_rate=RATE)


def test_audio_is_immutable() -> None:
    audio = Audio.from_samples(tone(440, 0.01), sample_rate=RATE)
    with pytest.raises(AttributeError):
        audio.sample_rate = 8000  # type: ignore[misc]


# --- the error hierarchy ----------------------------------------------------------------------

EXPECTED_ERRORS = {
    "UvacError": (None, 500, "internal"),
    "AudioError": ("UvacError", 422, "invalid-audio"),
    "NotAudioError": ("AudioError", 415, "not-audio"),
    "UnsupportedEncodingError": ("AudioError", 415, "unsupported-encoding"),
    "EmptyAudioError": ("AudioError", 422, "empty-audio"),
    "NonFiniteAudioError": ("AudioError", 422, "non-finite-audio"),
    "AudioTooLongError": ("AudioError", 413, "audio-too-long"),
    "ArtifactError": ("UvacError", 422, "invalid-model-artifact"),
    "RunCancelled": ("UvacError", 499, "run-cancelled"),
    "DatasetError": ("UvacError", 422, "invalid-dataset"),
}


@pytest.mark.parametrize("name", list(EXPECTED_ERRORS))
def test_error_hierarchy_statuses_and_slugs(name: str) -> None:
    parent, status, slug = EXPECTED_ERRORS[name]
    cls = getattr(errors, name)
    assert name in errors.__all__
    if parent is not None:
        assert cls.__bases__ == (getattr(errors, parent),)
    assert issubclass(cls, UvacError)
    assert (cls.status, cls.slug) == (status, slug)
    assert isinstance(cls.title, str) and cls.title
    assert name in (errors.__doc__ or "")  # the tree in the docstring names every class


def test_write_audio_fixture_round_trips(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "sub" / "clip.flac", tone(300, 0.1))
    assert load_audio(path, sample_rate=RATE).samples.size == 1600
