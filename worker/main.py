"""The worker entry point: ``uvac-worker [--queues training evaluation] [--burst] [--name N]``.

Configures JSON logging, refuses to start while another deployment's workers use the same
Redis database (`worker.deployment`), sweeps once for jobs abandoned by dead workers, keeps
sweeping in a background thread, and runs an RQ worker (JSON serializer, with RQ's scheduler
for retries with back-off) on the named queues.

torch is never imported here: the work horse that runs a job is forked from this process,
and forking after torch has started its thread pools can deadlock. The thread count reaches
the horse through ``OMP_NUM_THREADS`` and `worker.jobs` applies it again when a job starts.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from redis import Redis
from rq.serializers import JSONSerializer

from service_config import Settings, get_settings
from worker.deployment import (
    DeploymentConflict,
    check_no_other_deployment,
    deployment_of,
    worker_name,
)
from worker.job_support import thread_policy
from worker.logs import configure_logging
from worker.queues import QUEUE_NAMES
from worker.recovery import RecoveryThread, sweep_abandoned_jobs
from worker.runner import UvacWorker, tie_children_to_this_process

__all__ = ["build_worker", "main"]

logger = logging.getLogger(__name__)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="uvac-worker", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--queues",
        nargs="+",
        choices=QUEUE_NAMES,
        default=list(QUEUE_NAMES),
        help="queues to take jobs from, in priority order (default: all)",
    )
    parser.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    parser.add_argument("--name", default=None, help="worker name (default: random)")
    return parser.parse_args(argv)


def build_worker(
    *, settings: Settings, queue_names: Sequence[str], connection: Redis, name: str | None
) -> UvacWorker:
    return UvacWorker(
        list(queue_names),
        name=name,
        connection=connection,
        serializer=JSONSerializer,
        default_result_ttl=settings.job_result_ttl,
        job_monitoring_interval=settings.worker_monitor_interval,
        heartbeat_grace=settings.worker_heartbeat_grace,
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    settings = get_settings()
    configure_logging(level=settings.log_level)
    # A native pool sized for the workload that uses the most (the encoder's pass).
    os.environ.setdefault("OMP_NUM_THREADS", str(thread_policy(settings).most()))
    tie_children_to_this_process()  # no orphaned horse may train on after a SIGKILL

    connection = Redis.from_url(settings.redis_url)
    deployment = deployment_of(settings)
    try:
        check_no_other_deployment(connection, deployment)
    except DeploymentConflict as conflict:
        logger.error("not starting: %s", conflict)
        return 1
    queue_names = list(arguments.queues)
    swept = sweep_abandoned_jobs(connection, settings=settings, queue_names=queue_names)
    if swept.requeued:
        logger.info("re-queued %d abandoned job(s) at start", len(swept.requeued))
    recovery = RecoveryThread(settings=settings, queue_names=queue_names)
    recovery.start()

    worker = build_worker(
        settings=settings,
        queue_names=queue_names,
        connection=connection,
        name=worker_name(deployment, arguments.name),
    )
    logger.info("worker %s listening on %s", worker.name, ", ".join(queue_names))
    try:
        worker.work(burst=arguments.burst, with_scheduler=True, logging_level=settings.log_level)
    finally:
        recovery.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
