"""One live stream's state: the samples it still needs, its decisions, the smoother, and the
whole stream's pi at the end. No sockets here: `app.streaming.connection` feeds it.

Decisions are the windows `uvac.audio.LiveWindows` names, each clustered as a clip of its own
through `cluster` (the micro-batcher in the app), so each one's pi is the pi `/v1/cluster`'s
``windows`` timeline gives the same window. The final pi is `/v1/cluster`'s for the whole
stream: the activity-weighted mean of every window it would cut, which is each decision plus
the window it aligns to the recording's end (every full window counts once: the features
of a streamable model have no activity threshold); a stream shorter than one window is
clustered whole, as `/v1/cluster` clusters a short clip.

A window can also be started before it is whole (`heard_early`): once all but its last
``lead`` samples have arrived, its samples so far go to the encoder, which does most of its
work on them while the rest is still being heard.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from app.serving import LoadedModel
from uvac.audio import Audio, LiveWindows
from uvac.edge import ProgramSmoother, SmoothedDecision
from uvac.evaluation import ClipResult

ClusterClip = Callable[[Audio], Awaitable[ClipResult]]
"""Clusters one clip with the stream's model (the app's micro-batcher)."""


@dataclass(frozen=True)
class Window:
    """A window ready to be clustered: where it lies and when its last sample arrived."""

    index: int
    start: int  # first sample, in stream samples
    samples: np.ndarray  # (window_samples,) float32
    completed_at: float  # time.perf_counter() when its last sample arrived


@dataclass(frozen=True)
class Decision:
    window: Window
    result: ClipResult  # the window as a clip of its own: one entry in `windows`
    smoothed: SmoothedDecision


@dataclass(frozen=True)
class FinalResult:
    duration_s: float
    decisions: int
    probabilities: list[float]
    assignment: int
    confidence: float


class StreamSession:
    """Samples in, windows out, decisions smoothed in order; see the module docstring."""

    def __init__(
        self,
        *,
        model: LoadedModel,
        windows: LiveWindows,
        smoother: ProgramSmoother,
    ) -> None:
        self.model = model
        self.windows = windows
        self._smoother = smoother
        capacity = 2 * windows.window_samples + windows.hop_samples
        self._data = np.empty(capacity, dtype=np.float32)
        self._length = 0  # valid samples in _data
        self._offset = 0  # stream sample index of _data[0]
        self._next_start = 0  # first sample of the next decision window
        self._next_index = 0
        self._early_index = 0  # the next window `heard_early` may give
        self._pi_sum: np.ndarray | None = None  # (K,) float64 sum of the decisions' pi

    @property
    def received_samples(self) -> int:
        return self._offset + self._length

    @property
    def received_s(self) -> float:
        return self.received_samples / self.windows.sample_rate

    def add(self, samples: np.ndarray, *, arrived_at: float | None = None) -> list[Window]:
        """Append samples; the windows they complete, in order."""
        arrived = time.perf_counter() if arrived_at is None else arrived_at
        self._append(samples)
        ready = []
        window_samples = self.windows.window_samples
        while self._next_start + window_samples <= self.received_samples:
            begin = self._next_start - self._offset
            ready.append(
                Window(
                    index=self._next_index,
                    start=self._next_start,
                    samples=self._data[begin : begin + window_samples].copy(),
                    completed_at=arrived,
                )
            )
            self._next_start += self.windows.hop_samples
            self._next_index += 1
        return ready

    def heard_early(self, lead_samples: int) -> list[tuple[int, np.ndarray]]:
        """The windows not yet whole of which all but at most the last ``lead_samples``
        have arrived, each once: (its index, its samples so far)."""
        if lead_samples <= 0:
            return []
        heard: list[tuple[int, np.ndarray]] = []
        window_samples = self.windows.window_samples
        # A window `add` gave whole needs no early start.
        self._early_index = max(self._early_index, self._next_index)
        while True:
            start = self._early_index * self.windows.hop_samples
            if start + window_samples - lead_samples > self.received_samples:
                return heard
            samples = self.heard_of(self._early_index)
            assert samples is not None  # not yet whole, so its first samples are kept
            heard.append((self._early_index, samples))
            self._early_index += 1

    def heard_of(self, index: int) -> np.ndarray | None:
        """The samples of window ``index`` heard so far; None once it is whole."""
        start = index * self.windows.hop_samples
        if index < self._next_index or start < self._offset or start > self.received_samples:
            return None
        return self._data[start - self._offset : self._length].copy()

    def decide(self, window: Window, result: ClipResult) -> Decision:
        """Smooth the next window's pi (call in window order)."""
        pi = np.asarray(result.windows[0].probabilities, dtype=np.float64)
        self._pi_sum = pi.copy() if self._pi_sum is None else self._pi_sum + pi
        dt = 0.0 if window.index == 0 else self.windows.hop_s
        return Decision(window=window, result=result, smoothed=self._smoother.update(pi, dt))

    def closing_clips(self, window_start_samples: Callable[[int], list[int]]) -> list[Audio]:
        """The clips still to cluster for the final pi: the stream itself when it is shorter
        than a window, else the windows `/v1/cluster` cuts that no decision covered (the one
        aligned to the end, when there is one). ``window_start_samples`` is the model's
        `FeatureExtractor.window_start_samples`."""
        total = self.received_samples
        rate = self.windows.sample_rate
        if self._next_index == 0:
            return [Audio.from_samples(self._data[: self._length], sample_rate=rate)]
        decided = self._next_start - self.windows.hop_samples  # the last decision's start
        clips = []
        for start in window_start_samples(total):
            if start > decided:
                begin = start - self._offset
                piece = self._data[begin : begin + self.windows.window_samples]
                clips.append(Audio.from_samples(piece, sample_rate=rate))
        return clips

    def final(self, closing: list[ClipResult]) -> FinalResult:
        """The whole stream's pi from the decisions and the `closing_clips` results."""
        if self._pi_sum is None:
            (whole,) = closing  # shorter than a window: /v1/cluster's answer for the clip
            pi = np.asarray(whole.probabilities, dtype=np.float64)
        else:
            pi = self._pi_sum.copy()
            for clip in closing:
                pi += np.asarray(clip.windows[0].probabilities, dtype=np.float64)
            pi /= pi.sum()
        assignment = int(np.argmax(pi))
        return FinalResult(
            duration_s=self.received_samples / self.windows.sample_rate,
            decisions=self._next_index,
            probabilities=pi.tolist(),
            assignment=assignment,
            confidence=float(pi[assignment]),
        )

    def _append(self, samples: np.ndarray) -> None:
        needed = self._length + samples.shape[0]
        if needed > self._data.shape[0]:
            # Drop what no window and no closing clip will read again: before the next
            # decision's start and before the last window_samples received.
            keep_from = min(self._next_start, self.received_samples - self.windows.window_samples)
            drop = max(0, keep_from - self._offset)
            if drop:
                self._data[: self._length - drop] = self._data[drop : self._length]
                self._length -= drop
                self._offset += drop
            needed = self._length + samples.shape[0]
            if needed > self._data.shape[0]:
                grown = np.empty(max(needed, 2 * self._data.shape[0]), dtype=np.float32)
                grown[: self._length] = self._data[: self._length]
                self._data = grown
        self._data[self._length : self._length + samples.shape[0]] = samples
        self._length += samples.shape[0]
