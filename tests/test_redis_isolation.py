"""A test run never flushes the Redis of a service on the same machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def _port_chosen_with(environment: dict[str, str]) -> int:
    finished = subprocess.run(
        [sys.executable, "-c", "import tests.redis_address as a; print(a.TEST_REDIS_PORT)"],
        cwd=REPOSITORY, env=environment, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return int(finished.stdout)


def test_by_default_the_tests_use_a_free_port_not_the_services_6379() -> None:
    environment = {k: v for k, v in os.environ.items() if k != "UVAC_TEST_REDIS_PORT"}
    environment["PYTHONPATH"] = str(REPOSITORY)
    ports = {_port_chosen_with(environment) for _ in range(2)}
    assert 6379 not in ports


def test_a_named_test_server_is_used_as_named() -> None:
    environment = {**os.environ, "UVAC_TEST_REDIS_PORT": "6502", "PYTHONPATH": str(REPOSITORY)}
    assert _port_chosen_with(environment) == 6502
