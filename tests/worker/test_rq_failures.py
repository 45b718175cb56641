"""RQ itself writes the failure notes that worker.rq_failures reads (pinned RQ version)."""

from __future__ import annotations

import time

from redis import Redis
from rq import Queue, Worker
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from worker.rq_failures import failure_error, is_abandoned, is_horse_lost, is_lost_worker


def _failure_text(job: Job) -> str:
    latest = job.latest_result()
    assert latest is not None
    return latest.exc_string or ""


def test_rq_notes_a_killed_work_horse_the_way_is_horse_lost_reads(redis_conn: Redis) -> None:
    queue = Queue("rq-failures", connection=redis_conn, serializer=JSONSerializer)
    job = queue.enqueue("tests.worker.job_fixtures.horse_dies_job", {})
    Worker([queue], connection=redis_conn, serializer=JSONSerializer).work(burst=True)

    failure = _failure_text(Job.fetch(job.id, connection=redis_conn, serializer=JSONSerializer))
    assert is_horse_lost(failure), failure
    assert is_lost_worker(failure)
    assert not is_abandoned(failure)
    assert failure_error(failure)[0] == "WorkerLost"


def test_rq_notes_an_abandoned_job_the_way_is_abandoned_reads(redis_conn: Redis) -> None:
    queue = Queue("rq-failures", connection=redis_conn, serializer=JSONSerializer)
    job = queue.enqueue("tests.worker.job_fixtures.horse_dies_job", {})
    # A worker took the job and vanished: started, its execution's heartbeat run out.
    queue.remove(job)
    job.set_status("started")
    registry = StartedJobRegistry(queue=queue)
    redis_conn.zadd(registry.key, {f"{job.id}:lost-execution": time.time() - 10})
    registry.cleanup()

    failure = _failure_text(Job.fetch(job.id, connection=redis_conn, serializer=JSONSerializer))
    assert is_abandoned(failure), failure
    assert is_lost_worker(failure)
    assert not is_horse_lost(failure)


def test_a_job_that_raised_is_not_a_lost_worker() -> None:
    failure = "Traceback ...\nworker.errors.JobNotFound: No job with id x"
    assert not is_lost_worker(failure)
    assert failure_error(failure) == ("JobNotFound", "No job with id x")
