"""Fault injection with real processes. Each fault returns ``{"name", "survived", "checks"}``
where ``checks`` lists every condition that was verified with its observed value.

- ``worker-sigkill``: SIGKILL a worker mid-training; another worker resumes the job from its
  checkpoint (the worker's recovery sweep) and it finishes.
- ``redis-restart``: restart a private append-only Redis (the compose file's persistence)
  under a queued backlog; no job is lost and ``/v1/cluster`` answers throughout.
- ``corrupt-weights``: promote a version whose weights file has one byte flipped; it is
  refused, the previous version keeps serving, ``/readyz`` says why.
- ``huge-upload``: a request declaring a 10 GB body (and one streaming without a length) is
  refused early with 413 and the server's memory stays flat.

The job-pipeline faults are in `benchmarks.reliability.faults_worker`, the API-server faults in
`benchmarks.reliability.faults_api`, the checks they record in
`benchmarks.reliability.fault_checks`; `run_faults` runs them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.reliability.faults_api import corrupt_weights, huge_upload
from benchmarks.reliability.faults_worker import redis_restart, worker_sigkill
from benchmarks.reliability.harness import RedisServer, publish_tiny_model, running_api

__all__ = ["corrupt_weights", "huge_upload", "redis_restart", "run_faults", "worker_sigkill"]

logger = logging.getLogger(__name__)


def run_faults(*, work_dir: Path, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the named faults (default: all four), each isolated; a fault that raises fails."""
    wanted = names or ["worker-sigkill", "redis-restart", "corrupt-weights", "huge-upload"]
    results: list[dict[str, Any]] = []
    work_dir.mkdir(parents=True, exist_ok=True)

    def guarded(name: str, body: Callable[[], dict[str, Any]]) -> None:
        if name not in wanted:
            return
        logger.info("fault: %s", name)
        try:
            results.append(body())
        except Exception as error:  # a harness failure is reported, not hidden
            logger.exception("fault %s raised", name)
            results.append({"name": name, "survived": False, "checks": [],
                            "error": f"{type(error).__name__}: {error}"})  # fmt: skip

    redis_server = RedisServer(directory=work_dir / "redis").start()
    try:
        guarded("worker-sigkill", lambda: worker_sigkill(
            work_dir=work_dir / "sigkill", redis_server=redis_server))  # fmt: skip
        guarded("redis-restart", lambda: redis_restart(
            work_dir=work_dir / "redis-restart", redis_server=redis_server))  # fmt: skip
    finally:
        redis_server.stop()

    if "corrupt-weights" in wanted or "huge-upload" in wanted:
        data_dir = work_dir / "api" / "data"
        publish_tiny_model(data_dir / "models")
        api_redis = RedisServer(directory=work_dir / "api-redis").start()
        try:
            with running_api(
                data_dir=data_dir, redis_url=api_redis.url, log_path=work_dir / "api.log"
            ) as server:
                guarded("huge-upload", lambda: huge_upload(server=server))
                guarded("corrupt-weights", lambda: corrupt_weights(
                    server=server, store_root=data_dir / "models"))  # fmt: skip
        finally:
            api_redis.stop()
    return results
