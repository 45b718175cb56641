"""UvacWorker's failure path: a job the horse already handed back is not failed as well."""

from __future__ import annotations

from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from service_config import Settings
from worker import queues
from worker.main import build_worker
from worker.rq_failures import HORSE_LOST_PREFIX

HORSE_LOST = HORSE_LOST_PREFIX + "; waitpid returned None; "


def _job_and_queue(redis_conn: Redis, settings: Settings) -> tuple[Job, Queue]:
    job_id = queues.enqueue_training(
        redis_conn, {"dataset_id": "ds_000000000000", "model_name": "tones"}, settings=settings
    )
    job = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
    return job, queues.queue_for(redis_conn, queues.TRAINING_QUEUE)


def _worker(redis_conn: Redis, settings: Settings):
    return build_worker(
        settings=settings, queue_names=[queues.TRAINING_QUEUE], connection=redis_conn, name=None
    )


def test_a_lost_horse_does_not_fail_a_job_that_is_back_on_its_queue(
    redis_conn: Redis, settings: Settings
) -> None:
    job, queue = _job_and_queue(redis_conn, settings)  # queued, as the horse's hand-back leaves it
    _worker(redis_conn, settings).handle_job_failure(job, queue=queue, exc_string=HORSE_LOST)
    assert job.get_status(refresh=True) == JobStatus.QUEUED
    assert queue.get_job_ids() == [job.id]
    assert job.retries_left == settings.job_retry_max  # no retry spent


def test_a_lost_horse_still_fails_a_job_that_was_running(
    redis_conn: Redis, settings: Settings
) -> None:
    job, queue = _job_and_queue(redis_conn, settings)
    queue.remove(job)
    job.set_status(JobStatus.STARTED)  # the horse died mid-run: nothing handed it back
    _worker(redis_conn, settings).handle_job_failure(job, queue=queue, exc_string=HORSE_LOST)
    assert job.get_status(refresh=True) == JobStatus.SCHEDULED  # RQ's retry, as before
    assert job.retries_left == settings.job_retry_max - 1
