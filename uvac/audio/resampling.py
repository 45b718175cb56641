"""Resampling a signal that arrives block by block, with torchaudio's sinc kernel.

`torchaudio.transforms.Resample` wants the whole signal at once; a long recording at a high
rate would then be held in full (and padded, and convolved) before it shrinks to the model's
rate. `StreamingResampler` applies the same kernel to blocks as they are decoded and keeps only
the few input samples the next output needs, so memory follows the output, not the input. Its
output equals `Resample` on the whole signal (tests/uvac/audio/test_resampling.py).
"""

from __future__ import annotations

import functools
import logging
import math
from fractions import Fraction

import numpy as np
import torch
import torchaudio

__all__ = ["StreamingResampler", "resample_signal", "resampling_ratio"]

logger = logging.getLogger(__name__)

# A resampling kernel has about (new/gcd) x (orig/gcd) taps; unusual rates (44101 Hz) would
# make it gigabytes, so ratios with larger terms are approximated (see resampling_ratio).
_MAX_RATIO_TERM = 1_000
# Output samples allocated up front from a header's declared length, at most (64 MiB).
_MAX_HINTED_OUTPUT = 1 << 24


def resampling_ratio(orig_rate: int, new_rate: int) -> tuple[int, int]:
    """The ratio orig:new in lowest terms, approximated when its terms are large.

    The sinc kernel grows with the product of the terms; an approximation with terms of at most
    ``_MAX_RATIO_TERM`` changes the duration by well under 0.1% (1e-6 for 44101 Hz), inaudible
    and irrelevant to the features, while keeping the kernel a few megabytes at most.
    """
    ratio = Fraction(orig_rate, new_rate)
    if max(ratio.numerator, ratio.denominator) <= _MAX_RATIO_TERM:
        return ratio.numerator, ratio.denominator
    max_denominator = max(1, int(_MAX_RATIO_TERM / max(1.0, float(ratio))))
    approx = ratio.limit_denominator(max_denominator)
    logger.debug("Resampling %d -> %d Hz through the ratio %s", orig_rate, new_rate, approx)
    return approx.numerator, approx.denominator


@functools.lru_cache(maxsize=16)
def _resampler(orig_term: int, new_term: int) -> torchaudio.transforms.Resample:
    # The kernel depends only on the ratio; the module is never mutated after construction,
    # so sharing it between threads is safe.
    return torchaudio.transforms.Resample(orig_term, new_term, dtype=torch.float32)


def resample_signal(samples: np.ndarray, *, orig_rate: int, new_rate: int) -> np.ndarray:
    """A whole mono float32 signal ``(N,)`` at ``new_rate``, with the kernel of the ratio built
    once per process (`torchaudio.functional.resample` builds it again on every call)."""
    orig_term, new_term = resampling_ratio(orig_rate, new_rate)
    if orig_term == new_term:
        return samples
    with torch.inference_mode():
        signal = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
        resampled = _resampler(orig_term, new_term)(signal)
    return resampled.numpy()


class StreamingResampler:
    """Feed mono float32 blocks with `push`, then call `finish` for the resampled signal.

    >>> resampler = StreamingResampler(orig_rate=48_000, new_rate=16_000)
    >>> for block in blocks:  # doctest: +SKIP
    ...     resampler.push(block)
    >>> signal = resampler.finish()  # doctest: +SKIP
    """

    def __init__(self, *, orig_rate: int, new_rate: int, expected_input: int | None = None) -> None:
        self._orig, self._new = resampling_ratio(orig_rate, new_rate)
        # Rates within the approximation of each other (7999 and 8000 Hz) need no resampling.
        self._identity = self._orig == self._new
        self._length = 0  # input samples pushed
        # The output is written into one buffer, sized from ``expected_input`` (a header's
        # length) when known and grown by doubling otherwise: joining blocks at the end would
        # hold the whole output twice.
        # A header may lie, so the hint sizes the buffer only up to _MAX_HINTED_OUTPUT.
        expected = 0 if expected_input is None else self._output_length(expected_input)
        self._output = np.empty(min(max(expected, 1024), _MAX_HINTED_OUTPUT), dtype=np.float32)
        self._written = 0
        if self._identity:
            return
        module = _resampler(self._orig, self._new)
        self._kernel = module.kernel  # (new, 1, 2 * width + orig)
        self._width = int(module.width)
        # The signal as torchaudio pads it (width zeros in front), less what is consumed.
        self._pending = np.zeros(self._width, dtype=np.float32)

    def push(self, block: np.ndarray) -> None:
        """Resample what ``block`` (N,) completes; keep the tail the next outputs need."""
        self._length += block.size
        if self._identity:
            self._write(block)
            return
        self._pending = np.concatenate([self._pending, block.astype(np.float32, copy=False)])
        self._convolve_ready()

    def finish(self) -> np.ndarray:
        """The resampled signal (M,), M = ceil(N x new / orig), N the samples pushed."""
        if not self._identity:
            # torchaudio pads width + orig zeros at the end.
            tail = np.zeros(self._width + self._orig, dtype=np.float32)
            self._pending = np.concatenate([self._pending, tail])
            self._convolve_ready()
        signal = self._output[: min(self._written, self._output_length(self._length))]
        if signal.size < self._output.size // 2:  # do not keep a mostly empty buffer alive
            signal = signal.copy()
        self._output = np.empty(0, dtype=np.float32)
        return signal

    def _output_length(self, input_length: int) -> int:
        return math.ceil(self._new * input_length / self._orig)

    def _write(self, piece: np.ndarray) -> None:
        end = self._written + piece.size
        if end > self._output.size:
            grown = np.empty(max(end, 2 * self._output.size), dtype=np.float32)
            grown[: self._written] = self._output[: self._written]
            self._output = grown
        self._output[self._written : end] = piece
        self._written = end

    def _convolve_ready(self) -> None:
        kernel_size = self._kernel.shape[-1]
        if self._pending.size < kernel_size:
            return
        steps = (self._pending.size - kernel_size) // self._orig + 1
        used = (steps - 1) * self._orig + kernel_size
        window = torch.from_numpy(self._pending[:used]).view(1, 1, used)  # (1, 1, T)
        with torch.inference_mode():
            out = torch.nn.functional.conv1d(window, self._kernel, stride=self._orig)
        # (1, new, steps) -> interleave the phases: (steps * new,)
        self._write(out[0].transpose(0, 1).reshape(-1).numpy())
        self._pending = self._pending[steps * self._orig :].copy()
