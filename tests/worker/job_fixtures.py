"""Importable job functions for the worker tests (RQ imports jobs by dotted path)."""

from __future__ import annotations

from typing import Any

import redis
from rq import get_current_job

from worker.job_support import failure_policy


def flaky_job(params: dict[str, Any]) -> dict[str, Any]:
    """Fails the way a Redis hiccup does, until meta says it has failed often enough."""
    job = get_current_job()
    with failure_policy(job):
        raise redis.ConnectionError("Redis went away")


def horse_dies_job(params: dict[str, Any]) -> None:
    """The work horse is killed mid-job, as the kernel's out-of-memory killer would."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
