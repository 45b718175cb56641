"""app.upload_pace: a body that falls behind the floor is cut with 408, a steady one is not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.problems import ApiProblem
from app.upload_pace import UploadPace, paced_body


class _Body:
    """A stand-in for a Request: `stream()` yields `chunks`, sleeping `gap` before each."""

    def __init__(self, chunks: list[bytes], gap: float) -> None:
        self.chunks = chunks
        self.gap = gap

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(self.gap)
            yield chunk


async def _read(body: _Body, pace: UploadPace) -> bytes:
    return b"".join([chunk async for chunk in paced_body(body, pace)])  # type: ignore[arg-type]


def test_a_body_that_keeps_up_is_read_whole() -> None:
    pace = UploadPace(min_bytes_per_second=1_000, grace_seconds=0.2)
    body = _Body([b"x" * 500] * 4, gap=0.05)
    assert asyncio.run(_read(body, pace)) == b"x" * 2_000


def test_a_trickle_is_cut_soon_after_the_grace_period() -> None:
    pace = UploadPace(min_bytes_per_second=1_000, grace_seconds=0.2)
    body = _Body([b"C"] * 100, gap=0.1)  # 10 bytes per second
    with pytest.raises(ApiProblem) as refused:
        asyncio.run(_read(body, pace))
    assert refused.value.status == 408
    assert refused.value.slug == "upload-too-slow"


def test_a_client_that_stops_sending_is_cut_at_the_deadline() -> None:
    now = [0.0]
    pace = UploadPace(min_bytes_per_second=100, grace_seconds=5, clock=lambda: now[0])
    assert pace.seconds_left(0) == 5
    assert pace.seconds_left(200) == 7  # two more seconds for 200 bytes at 100 B/s
    now[0] = 8.0
    assert pace.seconds_left(200) < 0
