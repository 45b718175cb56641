"""A cap on how many recordings one process decodes at once, whichever door they came in by.

Each decode holds a block of the file's samples, a resampler and its output; many at once
would add up to what one bounded decode was meant to prevent. The API makes one `DecodeSlots`
and passes it to every path that decodes (single clips, batches, data set ingestion).

The decodes run on the slots' own threads, as many as there are slots: besides the cap, this
keeps the large, short-lived buffers of decoding in the same few threads, so the C allocator
reuses their memory instead of keeping a copy of it in the arena of every thread that ever
decoded. Each slot runs torch on one intra-op thread: resampling is many short operations,
and with a pool of several each one wakes the pool, whose threads then spin on after it,
costing the machine several times the decode's own CPU, and the decode its latency too
(benchmarks/README.md, serving). Several uploads decode side by side instead.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import ParamSpec, TypeVar

import torch

__all__ = ["DecodeSlots"]

P = ParamSpec("P")
T = TypeVar("T")


# Heap memory a decode must leave free (the arenas' free bytes after it, less before) for the
# pages to be handed back: a short clip's decode frees a few hundred kilobytes, which the
# next decode reuses, and trimming costs as much as that decode did (every arena walked, and
# the pages faulted in again afterwards). The arenas' free bytes alone say little: a serving
# process keeps tens of megabytes free that trimming does not shrink.
TRIM_ABOVE_FREED_BYTES = 16 * 1024 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _allocator() -> tuple[Callable[[], object], Callable[[], int | None]]:
    """glibc's malloc_trim(0) and the free bytes of its arenas (mallinfo2's ``fordblks``);
    no-ops (free bytes unknown) where the C library has neither."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return (lambda: None), (lambda: None)
    try:
        mallinfo2 = libc.mallinfo2
    except AttributeError:  # glibc before 2.33: free bytes unknown, trim every time
        return (lambda: trim(0)), (lambda: None)
    mallinfo2.restype = _MallInfo2
    return (lambda: trim(0)), (lambda: int(mallinfo2().fordblks))


_TRIM, _FREE_HEAP_BYTES = _allocator()


def _then_trim(function: Callable[[], T]) -> T:
    # A long decode frees tens of megabytes at once; handing the free pages back to the system
    # keeps the process's resident memory near what it uses rather than what it last used.
    free_before = _FREE_HEAP_BYTES()
    try:
        return function()
    finally:
        free_after = _FREE_HEAP_BYTES()
        freed = None
        if free_before is not None and free_after is not None:
            freed = free_after - free_before
        if freed is None or freed > TRIM_ABOVE_FREED_BYTES:
            _TRIM()


class DecodeSlots:
    """At most ``limit`` decodes at once: `call()` from a thread, `run()` from async code."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._executor = ThreadPoolExecutor(
            max_workers=limit,
            thread_name_prefix="uvac-decode",
            initializer=torch.set_num_threads,
            initargs=(1,),
        )

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
