"""The serving benchmark's load generator: prebuilt keep-alive ``POST /v1/cluster`` requests
written on raw asyncio streams from N concurrent connections, every response parsed and
checked (`load_point`).

An HTTP client library would cost more client CPU than the server spends on a 1 s clip on a
2-core machine; the client's own CPU share is recorded with each point.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.common import percentile_ms
from benchmarks.server_harness import RunningServer

BOUNDARY = "uvacbenchboundary7d1f"


def cluster_request(*, port: int, wav: bytes) -> bytes:
    """A complete ``POST /v1/cluster`` request (keep-alive, multipart with one file)."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="clip.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    body = head + wav + f"\r\n--{BOUNDARY}--\r\n".encode()
    headers = (
        "POST /v1/cluster HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode()
    return headers + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError("response without Content-Length")
    return status, await reader.readexactly(length)


def _clip_answer(body: bytes) -> Any:
    """The answer's JSON object; a one-element list is unwrapped (a BentoML batchable API
    answers each request with its slice of the batch)."""
    document = json.loads(body)
    if isinstance(document, list) and len(document) == 1:
        return document[0]
    return document


@dataclass
class _Tally:
    latencies_s: list[float]
    completed_in_window: int = 0
    errors: int = 0
    first_error: str | None = None


async def _connection_loop(
    *, port: int, request: bytes, n_clusters: int, start: float, end: float, tally: _Tally
) -> None:
    """One keep-alive connection sending requests back to back until ``end``."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (sent_at := loop.time()) < end:
            try:
                status, body = await _exchange(reader, writer, request)
                ok = status == 200 and len(_clip_answer(body)["probabilities"]) == n_clusters
                problem = None if ok else f"HTTP {status}: {body[:300]!r}"
            except (OSError, RuntimeError, ValueError, KeyError, asyncio.IncompleteReadError) as e:
                ok, problem = False, f"{type(e).__name__}: {e}"
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            done_at = loop.time()
            if sent_at >= start:  # requests sent during the warm-up are not counted
                if ok:
                    tally.latencies_s.append(done_at - sent_at)
                else:
                    tally.errors += 1
                    tally.first_error = tally.first_error or problem
            if start <= done_at <= end and ok:
                tally.completed_in_window += 1
    finally:
        writer.close()


async def _run_load(
    *, port: int, request: bytes, n_clusters: int, concurrency: int, warmup_s: float, seconds: float
) -> _Tally:
    loop = asyncio.get_running_loop()
    start = loop.time() + warmup_s
    end = start + seconds
    tally = _Tally(latencies_s=[])
    await asyncio.gather(
        *(
            _connection_loop(
                port=port, request=request, n_clusters=n_clusters, start=start, end=end, tally=tally
            )
            for _ in range(concurrency)
        )
    )
    return tally


def load_point(
    server: RunningServer,
    *,
    wav: bytes,
    n_clusters: int,
    concurrency: int,
    warmup_s: float,
    seconds: float,
) -> dict[str, Any]:
    """One (clip, concurrency) point: latency percentiles, throughput and CPU shares."""
    request = cluster_request(port=server.port, wav=wav)
    batch_sum_before, batch_count_before = server.batch_counters()
    server_cpu_before = server.cpu_seconds()
    client_cpu_before = time.process_time()
    wall_started = time.perf_counter()
    tally = asyncio.run(
        _run_load(
            port=server.port,
            request=request,
            n_clusters=n_clusters,
            concurrency=concurrency,
            warmup_s=warmup_s,
            seconds=seconds,
        )
    )
    wall = time.perf_counter() - wall_started
    client_cpu = time.process_time() - client_cpu_before
    server_cpu = server.cpu_seconds() - server_cpu_before
    batch_sum_after, batch_count_after = server.batch_counters()
    forward_passes = batch_count_after - batch_count_before
    served = len(tally.latencies_s) + tally.errors
    return {
        "throughput": round(tally.completed_in_window / seconds, 2),
        "p50_ms": percentile_ms(tally.latencies_s, 50),
        "p95_ms": percentile_ms(tally.latencies_s, 95),
        "p99_ms": percentile_ms(tally.latencies_s, 99),
        "mean_ms": round(1000.0 * sum(tally.latencies_s) / len(tally.latencies_s), 3)
        if tally.latencies_s
        else None,
        "requests": len(tally.latencies_s),
        "errors": tally.errors,
        "first_error": tally.first_error,
        "mean_batch_clips": round((batch_sum_after - batch_sum_before) / forward_passes, 2)
        if forward_passes
        else None,
        # Warm-up included in both CPU figures (they are shares of the whole point).
        "server_cpu_ms_per_request": round(1000.0 * server_cpu / max(served, 1), 3),
        "server_cpu_share": round(server_cpu / wall, 3),
        "client_cpu_share": round(client_cpu / wall, 3),
    }
