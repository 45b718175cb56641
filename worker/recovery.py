"""No lost work: find jobs whose worker died and run them again, from their checkpoint.

A worker refreshes the heartbeat of the job it runs (its entry in RQ's StartedJobRegistry)
every ``worker_monitor_interval`` seconds, with a time-to-live of that plus
``worker_heartbeat_grace``. When the worker is killed (SIGKILL, OOM killer, a lost host) the
entry expires. RQ itself would eventually (every 10 minutes) fail such a job as
``AbandonedJobError``; this sweep, run every few seconds by every worker, gets there first
and puts the job back on its queue with the same id and parameters. The training job keeps
its checkpoints under ``UVAC_CHECKPOINTS_DIR/<job id>``, so the re-run continues from the last
completed epoch.

The sweep also takes back jobs RQ already failed for the same reasons (``AbandonedJobError``,
or a work horse that died under a living worker). Each job is resumed at most
``max_resumes`` times (counted in ``meta["resumes"]``); after that it stays failed with a
``WorkerLost`` error, so a job that kills its worker every time cannot loop forever.

Only one process sweeps a queue at a time: the sweep holds RQ's own per-queue maintenance
lock, which also keeps RQ's registry cleanup from handling the same job concurrently.

The same thread also deletes checkpoint folders whose job Redis no longer knows
(`worker.checkpoint_sweep`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from redis import Redis, RedisError
from rq import Queue
from rq.job import Job
from rq.job import JobStatus as RqJobStatus
from rq.job_lifecycle import record_job_failure
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from service_config import Settings
from worker.checkpoint_sweep import sweep_orphan_checkpoints
from worker.progress import update_job_meta, utc_now_iso
from worker.queues import QUEUE_NAMES, fetch_job, queue_for
from worker.rq_failures import is_lost_worker
from worker.stores import discard_checkpoints

__all__ = ["RecoveryThread", "SweepReport", "sweep_abandoned_jobs"]

logger = logging.getLogger(__name__)


# What RQ writes when a job's process vanished rather than raised.
@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    skipped_queues: list[str] = field(default_factory=list)  # another process was sweeping


def sweep_abandoned_jobs(
    redis: Redis,
    *,
    settings: Settings,
    queue_names: Iterable[str] = QUEUE_NAMES,
    now: float | None = None,
) -> SweepReport:
    """One pass over the given queues; returns what it did."""
    report = SweepReport()
    moment = time.time() if now is None else now
    for name in queue_names:
        queue = queue_for(redis, name)
        if not queue.acquire_maintenance_lock():
            report.skipped_queues.append(name)
            continue
        try:
            _recover_expired(queue, settings=settings, now=moment, report=report)
            _recover_failed(queue, settings=settings, report=report)
        finally:
            queue.release_maintenance_lock()
    if report.requeued or report.given_up:
        logger.warning(
            "recovery: re-queued %s, gave up on %s",
            report.requeued or "none",
            report.given_up or "none",
        )
    return report


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _recover_expired(queue: Queue, *, settings: Settings, now: float, report: SweepReport) -> None:
    """Running jobs whose heartbeat expired: their worker is gone."""
    registry = StartedJobRegistry(
        queue.name, connection=queue.connection, serializer=JSONSerializer
    )
    entries = cast(list[Any], queue.connection.zrange(registry.key, 0, -1, withscores=True))
    live_jobs = {_text(entry).split(":", 1)[0] for entry, score in entries if score > now}
    for raw_entry, score in entries:
        if score > now:
            continue
        entry = _text(raw_entry)
        job_id = entry.split(":", 1)[0]
        # The entry goes in every case: it is stale, whatever happens to the job.
        queue.connection.zrem(registry.key, raw_entry)
        if job_id in live_jobs:
            continue  # an older execution's leftover; the job runs elsewhere right now
        job = fetch_job(queue.connection, job_id)
        if job is None or job.get_status(refresh=False) != RqJobStatus.STARTED:
            continue
        _resume_or_give_up(
            job,
            queue=queue,
            settings=settings,
            reason="its worker stopped sending heartbeats",
            report=report,
            from_failed=False,
        )


def _recover_failed(queue: Queue, *, settings: Settings, report: SweepReport) -> None:
    """Jobs RQ already failed because their process vanished rather than raised."""
    registry = FailedJobRegistry(queue.name, connection=queue.connection, serializer=JSONSerializer)
    for job_id in registry.get_job_ids(cleanup=False):
        job = fetch_job(queue.connection, job_id)
        if job is None or job.meta.get("recovery") == "gave_up" or job.meta.get("error"):
            continue
        latest = job.latest_result()
        if latest is None or latest.type != Result.Type.FAILED:
            continue
        failure = latest.exc_string or ""
        if not is_lost_worker(failure):
            continue
        _resume_or_give_up(
            job,
            queue=queue,
            settings=settings,
            reason=failure.strip().splitlines()[-1] if failure.strip() else "worker lost",
            report=report,
            from_failed=True,
        )


def _resume_or_give_up(
    job: Job,
    *,
    queue: Queue,
    settings: Settings,
    reason: str,
    report: SweepReport,
    from_failed: bool,
) -> None:
    resumes = int(job.meta.get("resumes", 0))
    if resumes >= settings.max_resumes:
        message = (
            f"The job's worker was lost ({reason}) and the job was already resumed "
            f"{resumes} time(s); giving up."
        )
        update_job_meta(
            job,
            {"error": {"type": "WorkerLost", "message": message}, "recovery": "gave_up"},
        )
        if not from_failed:
            with queue.connection.pipeline() as pipeline:
                record_job_failure(job, message, pipeline)
                pipeline.execute()
        # Nothing will resume this job any more.
        discard_checkpoints(settings, job.id)
        report.given_up.append(job.id)
        logger.error("job %s: %s", job.id, message)
        return

    update_job_meta(
        job,
        {"resumes": resumes + 1, "last_recovered_at": utc_now_iso(), "recovery_reason": reason},
    )
    if from_failed:
        FailedJobRegistry(
            queue.name, connection=queue.connection, serializer=JSONSerializer
        ).requeue(job, at_front=True)
    else:
        job.started_at = None
        job.ended_at = None
        queue.enqueue_job(job, at_front=True)
    report.requeued.append(job.id)
    logger.warning("job %s re-queued (resume %d): %s", job.id, resumes + 1, reason)


class RecoveryThread(threading.Thread):
    """Runs `sweep_abandoned_jobs`, then `sweep_orphan_checkpoints`, every
    ``recovery_interval_seconds`` until stopped.

    A daemon thread in the worker's main process (not in the forked work horse), with its own
    Redis connection. Errors are logged and the next sweep tries again.
    """

    def __init__(self, *, settings: Settings, queue_names: Iterable[str]) -> None:
        super().__init__(name="uvac-recovery", daemon=True)
        self.settings = settings
        self.queue_names = tuple(queue_names)
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        redis = Redis.from_url(self.settings.redis_url)
        try:
            while not self._stopped.is_set():
                self._sweep(
                    "recovery",
                    partial(
                        sweep_abandoned_jobs,
                        redis,
                        settings=self.settings,
                        queue_names=self.queue_names,
                    ),
                )
                # Apart from the recovery sweep, so that a checkpoint volume that cannot be
                # read does not stop dead workers' jobs from being taken back.
                self._sweep(
                    "checkpoint", partial(sweep_orphan_checkpoints, redis, settings=self.settings)
                )
                self._stopped.wait(self.settings.recovery_interval_seconds)
        finally:
            redis.close()

    @staticmethod
    def _sweep(name: str, sweep: Callable[[], object]) -> None:
        try:
            sweep()
        except RedisError as error:
            logger.warning("%s sweep failed (%s); retrying", name, error)
        except Exception:
            logger.exception("%s sweep failed", name)
