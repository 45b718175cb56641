"""How a device uses an exported model on live audio: the reference, in plain Python.

A device keeps the last ``window_samples`` samples (the sidecar's ``input.window_samples``)
and, every ``decision.hop_samples`` samples once the window is full, runs the model on that
window to get pi. Those are exactly the windows the API cuts from a recording (its
``windows`` timeline: starts every hop, each window the same length), except that the API
also ends a recording with one window aligned to its last sample, which a live stream never
has. So `decision_starts` of a recording are the API's window starts less that last one, and
each decision's pi is that window's pi.

Switching the hearing aid's program on every decision would flicker between clusters when a
scene sits between two of them. `ProgramSmoother` smooths pi with an exponential moving
average (time constant ``time_constant_s``) and switches the program only once another
cluster has led the smoothed pi for ``hold_s`` seconds without a break. Applied to the API's
timeline (`smooth_timeline`), it gives the program a device would have chosen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_HOLD_S",
    "DEFAULT_TIME_CONSTANT_S",
    "ProgramSmoother",
    "SmoothedDecision",
    "decision_starts",
    "device_decisions",
    "smooth_timeline",
]

DEFAULT_TIME_CONSTANT_S = 2.0
DEFAULT_HOLD_S = 3.0


def decision_starts(n_samples: int, *, window_samples: int, hop_samples: int) -> list[int]:
    """First sample of every window a live device decides on in ``n_samples`` of audio."""
    if window_samples < 1 or hop_samples < 1:
        raise ValueError("window_samples and hop_samples must be positive")
    return list(range(0, n_samples - window_samples + 1, hop_samples))


def device_decisions(
    samples: np.ndarray,
    run: Callable[[np.ndarray], np.ndarray],
    *,
    window_samples: int,
    hop_samples: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """The device loop over a recording: ``(start sample, pi)`` for each decision, with
    ``run`` mapping one ``(window_samples,)`` float32 window to pi ``(K,)``."""
    for start in decision_starts(
        len(samples), window_samples=window_samples, hop_samples=hop_samples
    ):
        window = np.asarray(samples[start : start + window_samples], dtype=np.float32)
        yield start, np.asarray(run(window), dtype=np.float64)


@dataclass(frozen=True)
class SmoothedDecision:
    """One decision after smoothing: the smoothed pi and the program (cluster) in force."""

    smoothed: list[float]
    program: int


class ProgramSmoother:
    """Exponential moving average of pi with a hold time before the program switches.

    ``update(pi, dt_s)`` takes each decision's pi and the seconds since the previous one:
    ``smoothed += (1 - exp(-dt / time_constant_s)) * (pi - smoothed)`` (the first pi is taken
    as it is). The program starts at the first decision's leading cluster; another cluster
    takes over once it has led ``smoothed`` for at least ``hold_s`` seconds in a row, timed from
    the first decision it led.
    """

    def __init__(
        self,
        *,
        time_constant_s: float = DEFAULT_TIME_CONSTANT_S,
        hold_s: float = DEFAULT_HOLD_S,
    ) -> None:
        if time_constant_s < 0 or hold_s < 0:
            raise ValueError("time_constant_s and hold_s must not be negative")
        self.time_constant_s = time_constant_s
        self.hold_s = hold_s
        self._smoothed: np.ndarray | None = None
        self.program: int | None = None
        self._leader: int | None = None
        self._led_for_s = 0.0

    def update(self, probabilities: Sequence[float] | np.ndarray, dt_s: float) -> SmoothedDecision:
        pi = np.asarray(probabilities, dtype=np.float64)
        if pi.ndim != 1 or pi.size < 2:
            raise ValueError(f"pi must be a vector of K >= 2 values, got shape {pi.shape}")
        if self._smoothed is None or self.program is None:
            self._smoothed = pi.copy()
            self.program = int(np.argmax(pi))
            self._leader = self.program
            return SmoothedDecision(smoothed=self._smoothed.tolist(), program=self.program)
        if pi.shape != self._smoothed.shape:
            raise ValueError(
                f"pi has {pi.size} values, earlier decisions had {self._smoothed.size}"
            )
        if dt_s < 0:
            raise ValueError("dt_s must not be negative")
        weight = 1.0 if self.time_constant_s == 0 else 1.0 - math.exp(-dt_s / self.time_constant_s)
        self._smoothed = self._smoothed + weight * (pi - self._smoothed)
        leader = int(np.argmax(self._smoothed))
        if leader == self.program:
            self._leader, self._led_for_s = leader, 0.0
        elif leader == self._leader:
            self._led_for_s += dt_s
        else:  # a new leader: its lead is timed from this decision on
            self._leader, self._led_for_s = leader, 0.0
        if leader != self.program and self._led_for_s >= self.hold_s:
            self.program, self._led_for_s = leader, 0.0
        return SmoothedDecision(smoothed=self._smoothed.tolist(), program=self.program)


def smooth_timeline(
    timeline: Sequence[Sequence[float]],
    *,
    interval_s: float,
    time_constant_s: float = DEFAULT_TIME_CONSTANT_S,
    hold_s: float = DEFAULT_HOLD_S,
) -> list[SmoothedDecision]:
    """`ProgramSmoother` over decisions ``interval_s`` apart (the API's ``windows`` pi)."""
    smoother = ProgramSmoother(time_constant_s=time_constant_s, hold_s=hold_s)
    return [
        smoother.update(pi, 0.0 if index == 0 else interval_s) for index, pi in enumerate(timeline)
    ]
