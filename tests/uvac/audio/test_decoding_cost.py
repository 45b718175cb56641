"""uvac.audio.decoding: what a recording may cost is bounded by what it decodes to.

A compressed file of silence at a high rate is small on the wire and large once decoded; its
samples (rate x seconds x channels) are checked on the header before decoding, and what is
decoded is resampled block by block, so memory follows the output rate, not the input's.
"""

from __future__ import annotations

import asyncio
import threading
import time
import tracemalloc

import numpy as np
import pytest
import torch

from tests.audio_fixtures import encode, patch_flac_total_samples, silence, tone
from uvac.audio import DecodeSlots, decode_slots
from uvac.audio import decoding as decoding_module
from uvac.audio.decode_slots import TRIM_ABOVE_FREED_BYTES
from uvac.audio.decoding import load_audio
from uvac.errors import AudioTooLongError

HIGH_RATE = 192_000


def high_rate_flac(seconds: float, *, sample_rate: int = HIGH_RATE, channels: int = 1) -> bytes:
    signal = silence(seconds, sample_rate=sample_rate)
    signal[: sample_rate // 10] = tone(440, 0.1, sample_rate=sample_rate)
    if channels > 1:
        return encode(np.stack([signal] * channels, axis=1), sample_rate=sample_rate, format="FLAC")
    return encode(signal, sample_rate=sample_rate, format="FLAC")


def test_samples_over_the_bound_are_refused_before_any_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flac = high_rate_flac(2.0)  # 384,000 samples, a few kilobytes of FLAC

    def no_decoding(*args: object, **kwargs: object) -> int:
        raise AssertionError("decoding started")

    monkeypatch.setattr(decoding_module, "_decode_mono", no_decoding)
    with pytest.raises(AudioTooLongError, match="samples"):
        load_audio(flac, sample_rate=16_000, max_seconds=600, max_samples=300_000)


def test_channels_count_in_the_samples_bound() -> None:
    stereo = high_rate_flac(1.0, sample_rate=48_000, channels=2)  # 96,000 samples
    with pytest.raises(AudioTooLongError, match="2 channel"):
        load_audio(stereo, sample_rate=16_000, max_samples=90_000)
    assert load_audio(stereo, sample_rate=16_000, max_samples=96_000).duration_s == 1.0


def test_a_stream_without_a_length_stops_at_the_samples_bound() -> None:
    flac = patch_flac_total_samples(high_rate_flac(2.0), 0)  # length unknown
    with pytest.raises(AudioTooLongError, match="samples"):
        load_audio(flac, sample_rate=16_000, max_seconds=600, max_samples=300_000)


def test_within_the_bound_the_duration_still_decides() -> None:
    with pytest.raises(AudioTooLongError, match=r"lasts 2\.0 s"):
        load_audio(high_rate_flac(2.0), sample_rate=16_000, max_seconds=1, max_samples=10**9)


def test_decoding_memory_follows_the_output_rate_not_the_input() -> None:
    # 30 s at 192 kHz: 23 MB of float32 at the file's rate, 1.9 MB at 16 kHz.
    flac = high_rate_flac(30.0)
    input_bytes = 30 * HIGH_RATE * 4
    tracemalloc.start()
    try:
        audio = load_audio(flac, sample_rate=16_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert audio.samples.size == 30 * 16_000
    # A block (4 MiB) and its mono copy, the output and its pieces: well under the input.
    assert peak < input_bytes / 2, (
        f"peak {peak / 1e6:.1f} MB for a {input_bytes / 1e6:.0f} MB input"
    )


def test_decode_slots_cap_concurrent_holders() -> None:
    slots = DecodeSlots(2)
    running = 0
    most = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    threads = [threading.Thread(target=slots.call, args=(work,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 2


def test_decode_slots_run_waits_on_the_loop_for_a_slot() -> None:
    slots = DecodeSlots(1)
    order: list[str] = []

    def work(name: str) -> str:
        order.append(f"start {name}")
        time.sleep(0.02)
        order.append(f"end {name}")
        return name

    async def both() -> list[str]:
        return list(await asyncio.gather(slots.run(work, "a"), slots.run(work, "b")))

    results = asyncio.run(both())
    assert sorted(results) == ["a", "b"]
    # One at a time: every start is followed by its own end.
    assert order[0].split()[1] == order[1].split()[1]
    assert order[2].split()[1] == order[3].split()[1]


def test_decode_slots_run_torch_on_one_intra_op_thread() -> None:
    """A slot's resampling must not wake a pool of intra-op threads that then spin, whatever
    the process's own setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(4)
    slots = DecodeSlots(2)
    try:
        counts = {slots.call(torch.get_num_threads) for _ in range(4)}
    finally:
        slots.close()
        torch.set_num_threads(previous)
    assert counts == {1}


def test_decode_slots_refuse_a_zero_limit() -> None:
    with pytest.raises(ValueError):
        DecodeSlots(0)


def _id3_tag(size: int) -> bytes:
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + syncsafe + b"\x00" * size


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x00" * 200, "AAC"),  # ADTS behind an ID3 tag
        (b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00" + b"\x00" * 200, "M4A/MP4"),
    ],
)
def test_a_format_behind_an_id3_tag_is_named(payload: bytes, named: str) -> None:
    from uvac.errors import UnsupportedEncodingError

    with pytest.raises(UnsupportedEncodingError, match=named.split()[0]):
        load_audio(_id3_tag(300) + payload, sample_rate=16_000)


@pytest.mark.parametrize("first_box", [b"free", b"skip", b"wide", b"mdat", b"moov"])
def test_mp4_starting_with_another_box_is_named(first_box: bytes) -> None:
    from uvac.errors import UnsupportedEncodingError

    data = b"\x00\x00\x00\x08" + first_box + b"\x00\x00\x00\x18ftypM4A " + b"\x00" * 200
    with pytest.raises(UnsupportedEncodingError, match="M4A/MP4"):
        load_audio(data, sample_rate=16_000)


def test_an_id3_tag_before_mp3_frames_is_still_mp3() -> None:
    mp3 = encode(tone(440, 1.0), sample_rate=16_000, format="MP3")
    audio = load_audio(_id3_tag(100) + mp3, sample_rate=16_000)
    assert abs(audio.duration_s - 1.0) < 0.2


def test_a_truncated_mp3_does_not_speak_of_pipes() -> None:
    from uvac.errors import AudioError

    mp3 = encode(tone(440, 1.0), sample_rate=16_000, format="MP3")
    for cut in (20, 200, 417):
        try:
            load_audio(mp3[:cut], sample_rate=16_000)
        except AudioError as error:
            assert "pipe" not in str(error).lower()


@pytest.mark.parametrize(
    ("free_before", "free_after", "trimmed"),
    [
        (40 << 20, 41 << 20, False),  # a short clip: little freed, however much was free
        (40 << 20, (40 << 20) + TRIM_ABOVE_FREED_BYTES + 1, True),  # a long decode's buffers
        (None, None, True),  # the C library cannot say: trim as before
    ],
)
def test_a_decode_trims_the_heap_only_when_it_left_much_of_it_free(
    monkeypatch: pytest.MonkeyPatch, free_before: int | None, free_after: int | None, trimmed: bool
) -> None:
    readings = iter([free_before, free_after])
    trims: list[bool] = []
    monkeypatch.setattr(decode_slots, "_FREE_HEAP_BYTES", lambda: next(readings))
    monkeypatch.setattr(decode_slots, "_TRIM", lambda: trims.append(True))
    assert DecodeSlots(1).call(lambda: "decoded") == "decoded"
    assert trims == ([True] if trimmed else [])


def test_the_free_heap_is_known_where_glibc_reports_it() -> None:
    free = decode_slots._FREE_HEAP_BYTES()
    assert free is None or free >= 0
