"""The frames a stream has read but not yet windowed, bounded by their samples.

The receiver waits while the queue is full, so it stops reading the socket and TCP holds
the client back: a server that falls behind holds at most ``max_samples`` (plus one frame)
per stream, never the client's whole backlog.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    samples: np.ndarray  # (N,) float32
    arrived_at: float  # time.perf_counter() when it was read


END = Frame(samples=np.empty(0, dtype=np.float32), arrived_at=0.0)
"""Put after the last frame (the client's eof)."""


class AudioQueue:
    def __init__(self, *, max_samples: int) -> None:
        self.max_samples = max_samples
        self._frames: deque[Frame] = deque()
        self._samples = 0
        self._changed = asyncio.Condition()

    async def put(self, frame: Frame) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._samples < self.max_samples)
            self._frames.append(frame)
            self._samples += frame.samples.shape[0]
            self._changed.notify_all()

    async def get(self) -> Frame:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._frames))
            frame = self._frames.popleft()
            self._samples -= frame.samples.shape[0]
            self._changed.notify_all()
            return frame
