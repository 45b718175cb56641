"""What an ideal server could hold: live streams through two inference lanes that cost nothing
but the measured encoder time, simulated. Each window is embedded whole once its last sample
has arrived: the server's early starts (`app.batching`, `start_window`), which do most of a
window's work before then, are outside this model, so the service can hold more than it.

The encoder-bound limit (``cores x hop / CPU seconds per window``) counts throughput only. A
decision must also come within the latency target of its window's end, and a window that
arrives while both lanes are busy waits for one: when one window already takes a large part
of the target, the lanes must be idle most of the time for almost every window to find one
free. This simulation answers how many streams a server with no overhead at all (no event
loop, no decoding, no hand-offs, lanes that never slow each other) would hold at the target,
with the cost per window measured in the same run, so that a benchmark can tell its own
overhead from the queueing every server pays.

The streams are those of `benchmarks/streaming.py`: each decides every ``hop_s`` from a
random phase within one hop. A free lane takes its even share of the waiting windows (at
most ``max_batch``), as the service's batcher does (`app.batching`), and a batch of b windows
takes b times the per-window cost at b (interpolated between the batch sizes measured).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Mapping
from typing import Any

__all__ = ["ideal_latencies_s", "ideal_p95_s", "ideal_streams_held"]


def _per_window_s(costs: Mapping[int, float], batch: int) -> float:
    """The cost per window at ``batch``, linear between the measured batch sizes."""
    sizes = sorted(costs)
    if batch <= sizes[0]:
        return costs[sizes[0]]
    for low, high in itertools.pairwise(sizes):
        if batch <= high:
            share = (batch - low) / (high - low)
            return costs[low] + share * (costs[high] - costs[low])
    return costs[sizes[-1]]


def ideal_latencies_s(
    streams: int,
    *,
    costs_s: Mapping[int, float],
    hop_s: float,
    lanes: int = 2,
    max_batch: int = 8,
    hops: int = 40,
    seed: int = 0,
) -> list[float]:
    """Every decision's latency (seconds from its window's end), sorted, for ``streams``
    streams over ``hops`` hops, each stream at its own random phase within a hop;
    ``costs_s`` maps batch size to seconds per window."""
    if streams < 1:
        raise ValueError(f"need at least one stream, got {streams}")
    rng = random.Random(seed)
    phases = [rng.uniform(0.0, hop_s) for _ in range(streams)]
    arrivals = sorted(phase + hop * hop_s for phase in phases for hop in range(hops))
    waiting: deque[float] = deque()
    free_at = [0.0] * lanes  # when each lane is next free
    heapq.heapify(free_at)
    latencies: list[float] = []
    upcoming = deque(arrivals)
    now = 0.0
    while upcoming or waiting:
        if not waiting:
            now = max(now, upcoming[0])
        while upcoming and upcoming[0] <= now:
            waiting.append(upcoming.popleft())
        lane_free = free_at[0]
        if lane_free > now:  # no lane free: advance to the next lane or arrival
            now = min(lane_free, upcoming[0]) if upcoming else lane_free
            continue
        heapq.heappop(free_at)
        batch = min(max_batch, len(waiting), math.ceil(len(waiting) / lanes))
        done = now + batch * _per_window_s(costs_s, batch)
        for _ in range(batch):
            latencies.append(done - waiting.popleft())
        heapq.heappush(free_at, done)
    return sorted(latencies)


def ideal_p95_s(streams: int, **simulation: Any) -> float:
    """The 95th percentile of `ideal_latencies_s`."""
    latencies = ideal_latencies_s(streams, **simulation)
    return latencies[min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)]


def ideal_streams_held(
    *,
    costs_s: Mapping[int, float],
    hop_s: float,
    target_s: float,
    most: int,
    lanes: int = 2,
    draws: int = 3,
) -> int:
    """The streams held, counting up from one until a count (at most ``most``) misses: the
    p95 latency within ``target_s`` in every one of ``draws`` random phase draws."""
    held = 0
    for streams in range(1, most + 1):
        if not all(
            ideal_p95_s(streams, costs_s=costs_s, hop_s=hop_s, lanes=lanes, seed=draw) <= target_s
            for draw in range(draws)
        ):
            break
        held = streams
    return held
