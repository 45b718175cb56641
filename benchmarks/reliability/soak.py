"""Soak: ``/v1/cluster`` at a fixed concurrency for a while; memory growth and errors.

The server's resident memory (``VmRSS`` of the uvicorn process) is read after a warm-up
(allocator pools, torch's caches and the resampler kernels settle in the first requests) and
again at the end; growth is reported in percent of the warmed-up value, with samples every
few seconds in between so a slow leak shows as a trend, not just two numbers.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from benchmarks.reliability.harness import (
    DEFAULT_REDIS_DB,
    ApiServer,
    publish_tiny_model,
    running_api,
    tone_wav,
)

logger = logging.getLogger(__name__)

MEGABYTE = 1024 * 1024


async def _load(
    server: ApiServer,
    *,
    seconds: float,
    concurrency: int,
    warmup_seconds: float,
    sample_every: float,
) -> dict[str, Any]:
    wav = tone_wav(1.0, sample_rate=16000)
    started = time.monotonic()
    deadline = started + seconds
    latencies: list[float] = []
    errors: dict[str, int] = {}
    rss_samples: list[tuple[float, int]] = []
    warm_rss: int | None = None
    requests_at_warm = 0

    async def one_client(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            try:
                response = await client.post(
                    f"{server.url}/v1/cluster", files={"file": ("tone.wav", wav)}
                )
                if response.status_code != 200:
                    key = str(response.status_code)
                    errors[key] = errors.get(key, 0) + 1
                    continue
            except httpx.HTTPError as error:
                key = type(error).__name__
                errors[key] = errors.get(key, 0) + 1
                continue
            latencies.append(time.perf_counter() - sent)

    async def sampler() -> None:
        nonlocal warm_rss, requests_at_warm
        while time.monotonic() < deadline:
            await asyncio.sleep(min(sample_every, max(0.0, deadline - time.monotonic())))
            elapsed = time.monotonic() - started
            rss = server.rss_bytes()
            rss_samples.append((round(elapsed, 1), rss))
            if warm_rss is None and elapsed >= warmup_seconds:
                warm_rss = rss
                requests_at_warm = len(latencies)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(sampler(), *(one_client(client) for _ in range(concurrency)))
    end_rss = server.rss_bytes()
    if warm_rss is None:  # a run shorter than its warm-up
        warm_rss = rss_samples[0][1] if rss_samples else end_rss
    ordered = sorted(latencies)

    def percentile(share: float) -> float | None:
        return (
            round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 1)
            if ordered
            else None
        )

    elapsed = time.monotonic() - started
    return {
        "seconds": round(elapsed, 1),
        "concurrency": concurrency,
        "requests": len(latencies) + sum(errors.values()),
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "requests_per_second": round(len(latencies) / elapsed, 1) if elapsed else None,
        "latency_ms": {
            "p50": percentile(0.50),
            "p99": percentile(0.99),
            "mean": round(statistics.fmean(ordered) * 1000, 1) if ordered else None,
        },
        "warmup_seconds": warmup_seconds,
        "requests_after_warmup": len(latencies) - requests_at_warm,
        "rss_after_warmup_mb": round(warm_rss / MEGABYTE, 1),
        "rss_end_mb": round(end_rss / MEGABYTE, 1),
        "soak_rss_growth_pct": round(100.0 * (end_rss - warm_rss) / warm_rss, 2),
        "rss_samples_mb": [(t, round(rss / MEGABYTE, 1)) for t, rss in rss_samples],
    }


def run_soak(
    *,
    seconds: float = 600.0,
    concurrency: int = 16,
    warmup_seconds: float | None = None,
    work_dir: Path | None = None,
    redis_url: str = f"redis://127.0.0.1:6379/{DEFAULT_REDIS_DB}",
) -> dict[str, Any]:
    """Start a server with a tiny model and load it; returns counts, latency and RSS."""
    work = Path(work_dir or tempfile.mkdtemp(prefix="uvac-soak-"))
    data_dir = work / "data"
    publish_tiny_model(data_dir / "models")
    warmup = warmup_seconds if warmup_seconds is not None else min(60.0, seconds / 10)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        with running_api(
            data_dir=data_dir, redis_url=redis_url, log_path=work / "api.log"
        ) as server:
            result = asyncio.run(
                _load(
                    server,
                    seconds=seconds,
                    concurrency=concurrency,
                    warmup_seconds=warmup,
                    sample_every=max(1.0, seconds / 60),
                )
            )
    finally:
        client.flushdb()
        client.close()
    logger.info(
        "soak: %d requests, %d errors, RSS %.1f -> %.1f MB (%+.2f%%)",
        result["requests"],
        result["errors"],
        result["rss_after_warmup_mb"],
        result["rss_end_mb"],
        result["soak_rss_growth_pct"],
    )
    return result
