"""worker.jobs: the failure policy (retry only what may pass) with an in-process RQ worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis import Redis
from rq import SimpleWorker
from rq.job import Job
from rq.job import JobStatus as RqJobStatus
from rq.serializers import JSONSerializer

from worker import queues
from worker.config import WorkerSettings, get_worker_settings


@pytest.fixture
def worker_environment(
    monkeypatch: pytest.MonkeyPatch, settings: WorkerSettings
) -> Iterator[WorkerSettings]:
    # The job functions read their settings from the environment, like a real worker.
    monkeypatch.setenv("UVAC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("UVAC_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("UVAC_TORCH_THREADS", "1")
    get_worker_settings.cache_clear()
    yield settings
    get_worker_settings.cache_clear()


def run_burst(redis_conn: Redis, queue_name: str) -> None:
    SimpleWorker([queue_name], connection=redis_conn, serializer=JSONSerializer).work(burst=True)


def test_bad_input_fails_at_once_with_a_readable_error(
    redis_conn: Redis, worker_environment: WorkerSettings
) -> None:
    job_id = queues.enqueue_training(
        redis_conn,
        {"dataset_id": "ds_0123456789ab", "n_clusters": 2},
        settings=worker_environment,
    )

    run_burst(redis_conn, queues.TRAINING_QUEUE)

    info = queues.get_job_info(redis_conn, job_id)
    assert info is not None
    assert info["status"] == "failed"  # not scheduled for a retry
    assert info["error"] == {
        "type": "DatasetNotFound",
        "message": "No data set 'ds_0123456789ab'.",
    }


def test_unknown_parameters_are_bad_input(
    redis_conn: Redis, worker_environment: WorkerSettings
) -> None:
    job_id = queues.enqueue_training(
        redis_conn,
        {"dataset_id": "ds_0123456789ab", "n_clusters": 2, "epochz": 3},
        settings=worker_environment,
    )
    run_burst(redis_conn, queues.TRAINING_QUEUE)

    info = queues.get_job_info(redis_conn, job_id)
    assert info is not None
    assert info["status"] == "failed"
    assert info["error"]["type"] == "InvalidJobParameters"
    assert "epochz" in info["error"]["message"]


def test_transient_failures_are_retried_with_back_off(
    redis_conn: Redis, worker_environment: WorkerSettings
) -> None:
    queue = queues.queue_for(redis_conn, queues.TRAINING_QUEUE)
    job = queue.enqueue_call(
        "tests.worker.job_fixtures.flaky_job",
        args=({},),
        retry=queues.retry_policy(worker_environment),
    )

    run_burst(redis_conn, queues.TRAINING_QUEUE)

    job = Job.fetch(job.id, connection=redis_conn, serializer=JSONSerializer)
    assert job.get_status() == RqJobStatus.SCHEDULED  # back-off before the next attempt
    assert job.retries_left == worker_environment.job_retry_max - 1
    assert job.get_meta()["last_error"] == {
        "type": "ConnectionError",
        "message": "Redis went away",
    }
    assert "error" not in job.get_meta()
