"""worker.recovery: jobs of dead workers go back to their queue, a bounded number of times.

These tests set up the Redis state a killed worker leaves behind; the end-to-end test in
test_worker_e2e.py kills a real worker process.
"""

from __future__ import annotations

import time

from redis import Redis
from rq.job import Job
from rq.job import JobStatus as RqJobStatus
from rq.job_lifecycle import record_job_failure
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from service_config import Settings
from worker import queues
from worker.progress import update_job_meta
from worker.recovery import sweep_abandoned_jobs

PARAMS = {"dataset_id": "ds_0123456789ab", "n_clusters": 2}


def fetch(redis_conn: Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)


def start_and_abandon(redis_conn: Redis, settings: Settings, *, heartbeat_age: float) -> Job:
    """A job a worker took and then stopped heart-beating for (score = heartbeat expiry)."""
    job_id = queues.enqueue_training(redis_conn, PARAMS, settings=settings)
    queue = queues.queue_for(redis_conn, queues.TRAINING_QUEUE)
    queue.remove(job_id)
    job = fetch(redis_conn, job_id)
    job.set_status(RqJobStatus.STARTED)
    registry = StartedJobRegistry(queues.TRAINING_QUEUE, connection=redis_conn)
    redis_conn.zadd(registry.key, {f"{job_id}:execution1": time.time() - heartbeat_age})
    return job


def test_a_job_whose_heartbeat_expired_is_requeued_with_the_same_id_and_params(
    redis_conn: Redis, settings: Settings
) -> None:
    job = start_and_abandon(redis_conn, settings, heartbeat_age=5)

    report = sweep_abandoned_jobs(redis_conn, settings=settings)

    assert report.requeued == [job.id]
    queue = queues.queue_for(redis_conn, queues.TRAINING_QUEUE)
    assert queue.job_ids == [job.id]
    again = fetch(redis_conn, job.id)
    assert again.get_status() == RqJobStatus.QUEUED
    assert again.args == [PARAMS]
    assert again.meta["resumes"] == 1
    assert "heartbeat" in again.meta["recovery_reason"]
    registry = StartedJobRegistry(queues.TRAINING_QUEUE, connection=redis_conn)
    assert redis_conn.zcard(registry.key) == 0
    # Nothing more to do on the next pass.
    assert sweep_abandoned_jobs(redis_conn, settings=settings).requeued == []


def test_a_live_heartbeat_is_left_alone(redis_conn: Redis, settings: Settings) -> None:
    job = start_and_abandon(redis_conn, settings, heartbeat_age=-30)  # expires in 30 s

    report = sweep_abandoned_jobs(redis_conn, settings=settings)

    assert report.requeued == []
    assert fetch(redis_conn, job.id).get_status() == RqJobStatus.STARTED


def test_resumes_are_capped(redis_conn: Redis, settings: Settings) -> None:
    job = start_and_abandon(redis_conn, settings, heartbeat_age=5)
    update_job_meta(job, {"resumes": settings.max_resumes})
    checkpoints = settings.checkpoints_path / job.id
    checkpoints.mkdir(parents=True)
    (checkpoints / "checkpoint.json").write_text("{}")

    report = sweep_abandoned_jobs(redis_conn, settings=settings)

    assert report.given_up == [job.id] and report.requeued == []
    info = queues.get_job_info(redis_conn, job.id)
    assert info is not None
    assert info["status"] == "failed"
    assert info["error"]["type"] == "WorkerLost"
    assert "giving up" in info["error"]["message"]
    assert not checkpoints.exists()
    assert sweep_abandoned_jobs(redis_conn, settings=settings).requeued == []


def test_a_job_rq_already_failed_as_abandoned_is_taken_back(
    redis_conn: Redis, settings: Settings
) -> None:
    job_id = queues.enqueue_training(redis_conn, PARAMS, settings=settings)
    job = fetch(redis_conn, job_id)
    queues.queue_for(redis_conn, queues.TRAINING_QUEUE).remove(job_id)
    with redis_conn.pipeline() as pipeline:
        record_job_failure(
            job, "Moved to FailedJobRegistry, due to AbandonedJobError, at 2025-01-01", pipeline
        )
        pipeline.execute()

    report = sweep_abandoned_jobs(redis_conn, settings=settings)

    assert report.requeued == [job_id]
    assert fetch(redis_conn, job_id).get_status() == RqJobStatus.QUEUED
    assert queues.queue_for(redis_conn, queues.TRAINING_QUEUE).job_ids == [job_id]


def test_a_job_that_failed_by_raising_stays_failed(redis_conn: Redis, settings: Settings) -> None:
    job_id = queues.enqueue_training(redis_conn, PARAMS, settings=settings)
    job = fetch(redis_conn, job_id)
    update_job_meta(job, {"error": {"type": "DatasetNotFound", "message": "gone"}})
    with redis_conn.pipeline() as pipeline:
        record_job_failure(job, "Traceback...\nworker.errors.DatasetNotFound: gone", pipeline)
        pipeline.execute()

    assert sweep_abandoned_jobs(redis_conn, settings=settings).requeued == []
    assert fetch(redis_conn, job_id).get_status() == RqJobStatus.FAILED


def test_only_one_process_sweeps_a_queue_at_a_time(redis_conn: Redis, settings: Settings) -> None:
    start_and_abandon(redis_conn, settings, heartbeat_age=5)
    queue = queues.queue_for(redis_conn, queues.TRAINING_QUEUE)
    assert queue.acquire_maintenance_lock()  # someone else is sweeping

    report = sweep_abandoned_jobs(redis_conn, settings=settings)

    assert report.requeued == [] and report.skipped_queues == [queues.TRAINING_QUEUE]
    queue.release_maintenance_lock()
    assert len(sweep_abandoned_jobs(redis_conn, settings=settings).requeued) == 1
