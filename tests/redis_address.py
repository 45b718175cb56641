"""Where the tests' Redis answers: 127.0.0.1:6379 unless ``UVAC_TEST_REDIS_PORT`` names another
port (so two test runs on one machine can each have a server of their own)."""

from __future__ import annotations

import os

TEST_REDIS_HOST = "127.0.0.1"
TEST_REDIS_PORT = int(os.environ.get("UVAC_TEST_REDIS_PORT", "6379"))


def redis_url_for_tests(db: int) -> str:
    """The URL of database ``db`` on the tests' Redis."""
    return f"redis://{TEST_REDIS_HOST}:{TEST_REDIS_PORT}/{db}"
