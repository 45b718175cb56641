"""Shared fixtures: Redis database 11 (flushed around each test) and fast worker settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from service_config import Settings
from tests.redis_address import redis_url_for_tests

REDIS_URL = redis_url_for_tests(11)


@pytest.fixture
def redis_conn() -> Iterator[Redis]:
    connection = Redis.from_url(REDIS_URL)
    connection.flushdb()
    try:
        yield connection
    finally:
        connection.flushdb()
        connection.close()


def fast_settings(data_dir: Path) -> Settings:
    """Timings short enough for tests: a dead worker is noticed within about 3 s."""
    return Settings(
        data_dir=data_dir,
        redis_url=REDIS_URL,
        torch_threads=1,
        device="cpu",
        worker_monitor_interval=1,
        worker_heartbeat_grace=2,
        recovery_interval_seconds=0.5,
        progress_interval_seconds=0.2,
        cancel_poll_seconds=0.1,
        job_retry_max=2,
        job_retry_intervals=(1, 2),
        training_job_timeout=600,
        evaluation_job_timeout=300,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fast_settings(tmp_path / "var")
