"""What the pretrained encoders cost: seconds of compute per second of audio, and FLOP use.

For each encoder (`uvac.audio.encoders`) at 1 and 2 threads and at batch 1 and 16 windows, the best
and median time of ``Encoder.embed`` on windows of a typical length (1 s for the sound
encoder, the bundled model's short-clip case; 1.5 s, its fixed input, for the speech encoder),
as milliseconds per window and as compute seconds per second of audio (below 1 is faster
than real time). The sound encoder's FLOP utilisation is its convolution FLOPs (counted by
``torch.utils.flop_counter``) per second against the matrix-multiply rate of the same run,
at the same thread count and in the same number format (the bf16 rate for bf16 autocast,
where the CPU has native bf16; else no bf16 row is timed);
the speech encoder's graph runs in ONNX Runtime, where torch cannot count it, so it reports
time only. bf16 autocast is timed for the sound encoder and the qint8 ONNX graph the package
ships for the speech encoder. `benchmarks/training_speed.py` calls `measure_encoders`.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from uvac.audio import (
    WEIGHTS_QINT8,
    Encoder,
    SoundEncoder,
    SpeechEncoder,
    configure_encoder_precision,
    load_encoder,
)
from uvac.device import configure_threads

__all__ = ["measure_encoders"]

logger = logging.getLogger(__name__)

WINDOW_SECONDS = {SoundEncoder.name: 1.0, SpeechEncoder.name: 1.5}


def _time(function: Callable[[], object], *, seconds: float) -> dict[str, float]:
    function()  # warm-up: first calls pick kernels
    durations: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(durations) < 3:
        started = time.perf_counter()
        function()
        durations.append(time.perf_counter() - started)
    return {
        "best_s": min(durations),
        "median_s": statistics.median(durations),
        "calls": len(durations),
    }


def _sound_flops(encoder: SoundEncoder, window: torch.Tensor) -> float:
    spectrogram = encoder.spectrogram(window)[None]  # (1, T, 96)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        encoder.network(spectrogram)
    return float(counter.get_total_flops())


def _windows(encoder: Encoder, batch: int) -> list[torch.Tensor]:
    samples = round(WINDOW_SECONDS[encoder.name] * encoder.sample_rate)
    generator = torch.Generator().manual_seed(0)
    return [0.1 * torch.randn(samples, generator=generator) for _ in range(batch)]


def _measure(
    encoder_for: Callable[[int], Encoder],
    *,
    label: str,
    threads: Sequence[int],
    batches: Sequence[int],
    seconds: float,
    gemm_gflops: dict[int, float],  # at each thread count, in this variant's number format
    flops_per_window: float | None,
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> list[dict[str, Any]]:
    rows = []
    for thread_count in threads:
        configure_threads(thread_count)
        encoder = encoder_for(thread_count)
        audio_seconds = WINDOW_SECONDS[encoder.name]
        for batch in batches:
            windows = _windows(encoder, batch)

            def embed(encoder: Encoder = encoder, windows: list[torch.Tensor] = windows) -> None:
                with context():
                    encoder.embed(windows)

            timing = _time(embed, seconds=seconds)
            per_window = timing["best_s"] / batch
            row: dict[str, Any] = {
                "variant": label,
                "threads": thread_count,
                "batch": batch,
                "window_seconds": audio_seconds,
                "ms_per_window_best": round(per_window * 1000, 2),
                "ms_per_window_median": round(timing["median_s"] / batch * 1000, 2),
                "compute_s_per_audio_s": round(per_window / audio_seconds, 4),
                "calls": timing["calls"],
            }
            if flops_per_window is not None:
                achieved = flops_per_window / per_window
                row["gflops_per_window"] = round(flops_per_window / 1e9, 3)
                row["achieved_gflops"] = round(achieved / 1e9, 1)
                row["flop_utilisation_vs_gemm"] = round(
                    achieved / (gemm_gflops[thread_count] * 1e9), 3
                )
            logger.info("%s", row)
            rows.append(row)
    return rows


def measure_encoders(
    *,
    gemm: Callable[[torch.dtype], float],
    threads: Sequence[int] = (1, 2),
    batches: Sequence[int] = (1, 16),
    seconds: float = 5.0,
) -> dict[str, Any]:
    """Every encoder's cost (see the module docstring); ``gemm(dtype)`` is the
    matrix-multiply rate in GFLOP/s in that format at the current thread count, measured by
    the caller."""
    native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    formats = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if native_bf16 else {})}
    rates: dict[str, dict[int, float]] = {name: {} for name in formats}
    for thread_count in threads:
        configure_threads(thread_count)
        for name, dtype in formats.items():
            rates[name][thread_count] = gemm(dtype)
    sound = load_encoder(SoundEncoder.name)
    assert isinstance(sound, SoundEncoder)
    flops = _sound_flops(sound, _windows(sound, 1)[0])
    speech = load_encoder(SpeechEncoder.name)

    @contextlib.contextmanager
    def bf16() -> Iterator[None]:
        configure_encoder_precision("bf16")  # the switch the API uses
        try:
            yield
        finally:
            configure_encoder_precision("fp32")

    common: dict[str, Any] = {"threads": threads, "batches": batches, "seconds": seconds}
    fp32 = {**common, "gemm_gflops": rates["fp32"]}
    rows = _measure(lambda _: sound, label="fp32", flops_per_window=flops, **fp32)
    if native_bf16:
        rows += _measure(
            lambda _: sound,
            label="bf16-autocast",
            flops_per_window=flops,
            context=bf16,
            **common,
            gemm_gflops=rates["bf16"],
        )
    # ONNX Runtime fixes its thread pool when a session is made: one session per count.
    speech_rows = _measure(
        lambda count: SpeechEncoder(threads=count), label="fp32", flops_per_window=None, **fp32
    )
    speech_rows += _measure(
        lambda count: SpeechEncoder(threads=count, weights=WEIGHTS_QINT8),
        label="qint8-onnx",
        flops_per_window=None,
        **fp32,
    )
    return {
        "gemm_gflops_by_format_and_threads": rates,
        SoundEncoder.name: {"identity": sound.identity.to_dict(), "runs": rows},
        SpeechEncoder.name: {"identity": speech.identity.to_dict(), "runs": speech_rows},
        "note": "ms per window is the best call divided by the batch; compute_s_per_audio_s "
        "below 1 is faster than real time. FLOPs: the sound encoder's network on one "
        f"{WINDOW_SECONDS[SoundEncoder.name]:g} s window (forward, torch's flop counter); the "
        "speech encoder runs in ONNX Runtime, not counted.",
    }
