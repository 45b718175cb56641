"""The ideal server's queue (`benchmarks.stream_queue`): what it holds follows from the cost."""

from __future__ import annotations

import pytest

from benchmarks.stream_queue import ideal_latencies_s, ideal_p95_s, ideal_streams_held


def test_a_window_that_costs_more_than_the_target_holds_no_stream() -> None:
    held = ideal_streams_held(costs_s={1: 0.3, 8: 0.3}, hop_s=2.5, target_s=0.25, most=10)
    assert held == 0


def test_as_many_streams_as_lanes_never_wait() -> None:
    # Two lanes, two streams at fixed phases: every window finds a lane free.
    latencies = ideal_latencies_s(2, costs_s={1: 0.2, 8: 0.2}, hop_s=2.5, lanes=2)
    assert len(latencies) == 2 * 40
    assert latencies[0] == pytest.approx(0.2) and latencies[-1] == pytest.approx(0.2)


def test_a_stream_never_queues_behind_itself() -> None:
    # One lane, one stream whose window takes most of a hop: a decision never waits.
    latencies = ideal_latencies_s(1, costs_s={1: 2.0, 8: 2.0}, hop_s=2.5, lanes=1)
    assert latencies[-1] == pytest.approx(2.0)


def test_more_streams_wait_longer_and_cheaper_windows_hold_more() -> None:
    costs = {1: 0.15, 8: 0.14}
    p95 = [ideal_p95_s(streams, costs_s=costs, hop_s=2.5) for streams in (4, 16, 32)]
    assert p95[0] < p95[1] < p95[2]
    slow = ideal_streams_held(costs_s=costs, hop_s=2.5, target_s=0.25, most=60)
    fast = ideal_streams_held(costs_s={1: 0.06, 8: 0.05}, hop_s=2.5, target_s=0.25, most=200)
    assert 2 <= slow < fast
    # A lane busy all the time cannot keep up: never more than the throughput allows.
    assert fast <= 2 * 2.5 / 0.05
