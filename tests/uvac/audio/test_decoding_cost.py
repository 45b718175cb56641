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

from tests.audio_fixtures import encode, patch_flac_total_samples, silence, tone
from uvac.audio import DecodeSlots
from uvac.audio import decoding as decoding_module
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

    def decode() -> None:
        nonlocal running, most
        with slots.hold():
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.02)
            with lock:
                running -= 1

    threads = [threading.Thread(target=decode) for _ in range(6)]
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


def test_decode_slots_refuse_a_zero_limit() -> None:
    with pytest.raises(ValueError):
        DecodeSlots(0)
