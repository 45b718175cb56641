"""A floor on how fast an upload's body must arrive.

Without one, a client that sends a byte every few seconds holds its request, and for data
sets one of the few upload slots, for as long as it likes; two such clients starved every
other upload. A body must keep up with `min_bytes_per_second` after `grace_seconds`: by the
time t seconds have passed, at least (t - grace) x rate bytes must have arrived, and each
wait for the next chunk is cut at that deadline (408 ``upload-too-slow``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from fastapi import Request

from app.problems import ApiProblem

__all__ = ["UploadPace", "paced_body"]


@dataclass
class UploadPace:
    """The deadline for the next bytes of one body, from its start and what has arrived."""

    min_bytes_per_second: float
    grace_seconds: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=-1.0)

    def __post_init__(self) -> None:
        if self.started < 0:
            self.started = self.clock()

    def seconds_left(self, received: int) -> float:
        """How long the body may take to deliver more than ``received`` bytes."""
        due = self.started + self.grace_seconds + received / self.min_bytes_per_second
        return due - self.clock()

    def too_slow(self, received: int) -> ApiProblem:
        elapsed = self.clock() - self.started
        return ApiProblem(
            status=408,
            slug="upload-too-slow",
            detail=f"The upload arrived too slowly ({received} bytes in {elapsed:.0f} s); "
            f"after the first {self.grace_seconds:g} s a body must arrive at "
            f"{self.min_bytes_per_second:g} bytes per second at least. Retry on a faster "
            "connection.",
        )


async def paced_body(request: Request, pace: UploadPace) -> AsyncIterator[bytes]:
    """The request body's chunks, refused with 408 as soon as it falls behind ``pace``."""
    chunks = request.stream().__aiter__()
    received = 0
    while True:
        seconds_left = pace.seconds_left(received)
        if seconds_left <= 0:
            raise pace.too_slow(received)
        try:
            chunk = await asyncio.wait_for(anext(chunks), timeout=seconds_left)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise pace.too_slow(received) from None
        received += len(chunk)
        yield chunk
