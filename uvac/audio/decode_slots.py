"""A cap on how many recordings one process decodes at once, whichever door they came in by.

Each decode holds a block of the file's samples, a resampler and its output; many at once
would add up to what one bounded decode was meant to prevent. The API makes one `DecodeSlots`
and passes it to every path that decodes (single clips, batches, data set ingestion).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

__all__ = ["DecodeSlots"]

P = ParamSpec("P")
T = TypeVar("T")

# How long an async waiter sleeps between tries at most; a decode takes far longer.
_MAX_POLL_S = 0.02


class DecodeSlots:
    """At most ``limit`` decodes at once: `hold()` from a thread, `run()` from async code."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._semaphore = threading.BoundedSemaphore(limit)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Block this thread until a slot is free; release it on exit."""
        with self._semaphore:
            yield

    async def run(self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``function`` on a worker thread once a slot is free.

        The wait happens on the event loop, not in a thread, so decodes waiting for a slot
        do not fill the thread pool that other work needs.
        """
        delay = 0.001
        while not self._semaphore.acquire(blocking=False):
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_POLL_S)
        try:
            return await asyncio.to_thread(function, *args, **kwargs)
        finally:
            self._semaphore.release()
