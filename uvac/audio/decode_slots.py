"""A cap on how many recordings one process decodes at once, whichever door they came in by.

Each decode holds a block of the file's samples, a resampler and its output; many at once
would add up to what one bounded decode was meant to prevent. The API makes one `DecodeSlots`
and passes it to every path that decodes (single clips, batches, data set ingestion).

The decodes run on the slots' own threads, as many as there are slots: besides the cap, this
keeps the large, short-lived buffers of decoding in the same few threads, so the C allocator
reuses their memory instead of keeping a copy of it in the arena of every thread that ever
decoded.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import ParamSpec, TypeVar

__all__ = ["DecodeSlots"]

P = ParamSpec("P")
T = TypeVar("T")


def _malloc_trim() -> Callable[[], object]:
    """glibc's malloc_trim(0), or a no-op where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0)


_TRIM = _malloc_trim()


def _then_trim(function: Callable[[], T]) -> T:
    # A decode frees tens of megabytes at once; handing the free pages back to the system
    # keeps the process's resident memory near what it uses rather than what it last used.
    try:
        return function()
    finally:
        _TRIM()


class DecodeSlots:
    """At most ``limit`` decodes at once: `call()` from a thread, `run()` from async code."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._executor = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="uvac-decode")

    def call(self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``function`` in a slot and wait for it (from a thread that is not a slot's)."""
        return self._executor.submit(_then_trim, partial(function, *args, **kwargs)).result()

    async def run(self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``function`` in a slot; the caller waits on the event loop, not in a thread."""
        loop = asyncio.get_running_loop()
        work = partial(_then_trim, partial(function, *args, **kwargs))
        return await loop.run_in_executor(self._executor, work)

    def close(self) -> None:
        """Finish the decodes under way and release the threads."""
        self._executor.shutdown(wait=True)
