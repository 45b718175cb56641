"""worker.queues against the real Redis (database 11): enqueue, status, list, cancel."""

from __future__ import annotations

import json
import zlib
from datetime import datetime

import pytest
from redis import Redis
from rq.job import Job
from rq.job import JobStatus as RqJobStatus
from rq.job_lifecycle import record_job_failure
from rq.serializers import JSONSerializer

from service_config import Settings
from worker import queues
from worker.errors import JobNotCancellable, JobNotFound
from worker.progress import update_job_meta

TRAIN_PARAMS = {"dataset_id": "ds_0123456789ab", "n_clusters": 3, "model_name": "scenes"}


def fetch(redis_conn: Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)


def test_enqueue_training_sets_timeouts_ttls_and_retries(
    redis_conn: Redis, settings: Settings
) -> None:
    job_id = queues.enqueue_training(redis_conn, TRAIN_PARAMS, settings=settings)

    job = fetch(redis_conn, job_id)
    assert job.origin == queues.TRAINING_QUEUE
    assert job.func_name == "worker.jobs.train_job"
    assert job.args == [TRAIN_PARAMS]
    assert job.timeout == settings.training_job_timeout
    assert job.result_ttl == settings.job_result_ttl
    assert job.failure_ttl == settings.job_failure_ttl
    assert job.retries_left == settings.job_retry_max
    assert job.retry_intervals == list(settings.job_retry_intervals)
    # JSON all the way (zlib-compressed by RQ): readable without unpickling.
    raw = redis_conn.hget(job.key, "data")
    assert isinstance(raw, bytes)
    stored = json.loads(zlib.decompress(raw))
    assert stored[0] == "worker.jobs.train_job"
    assert stored[2] == [TRAIN_PARAMS]


def test_job_info_of_a_queued_job(redis_conn: Redis, settings: Settings) -> None:
    job_id = queues.enqueue_evaluation(
        redis_conn, {"model_ref": "scenes:v1", "dataset_id": "ds_0123456789ab"}, settings=settings
    )
    info = queues.get_job_info(redis_conn, job_id)

    assert info is not None
    assert info["id"] == job_id
    assert info["kind"] == "evaluate"
    assert info["status"] == "queued"
    assert info["params"] == {"model_ref": "scenes:v1", "dataset_id": "ds_0123456789ab"}
    assert info["progress"] is None and info["result"] is None and info["error"] is None
    assert datetime.fromisoformat(info["enqueued_at"]).tzinfo is not None
    assert info["started_at"] is None and info["ended_at"] is None
    assert fetch(redis_conn, job_id).timeout == settings.evaluation_job_timeout


def test_unknown_job_is_none(redis_conn: Redis) -> None:
    assert queues.get_job_info(redis_conn, "no-such-job") is None


def test_same_job_id_twice_is_one_job(redis_conn: Redis, settings: Settings) -> None:
    first = queues.enqueue_training(redis_conn, TRAIN_PARAMS, job_id="job-1", settings=settings)
    second = queues.enqueue_training(redis_conn, TRAIN_PARAMS, job_id="job-1", settings=settings)

    assert first == second == "job-1"
    assert queues.queue_for(redis_conn, queues.TRAINING_QUEUE).count == 1


def test_list_jobs_newest_first_with_status_filter_and_pruning(
    redis_conn: Redis, settings: Settings
) -> None:
    ids = [queues.enqueue_training(redis_conn, TRAIN_PARAMS, settings=settings) for _ in range(4)]
    queues.cancel_job(redis_conn, ids[1])
    fetch(redis_conn, ids[0]).delete()  # expired or removed: pruned from the listing

    listed, total = queues.list_jobs(redis_conn)
    assert total == 3
    assert [info["id"] for info in listed] == [ids[3], ids[2], ids[1]]

    page, total = queues.list_jobs(redis_conn, offset=1, limit=1)
    assert total == 3 and [info["id"] for info in page] == [ids[2]]

    canceled, total = queues.list_jobs(redis_conn, status="canceled")
    assert total == 1 and canceled[0]["id"] == ids[1]
    assert redis_conn.zcard(queues.JOB_INDEX_KEY) == 3


def _count_job_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the jobs read whole from now on, in order."""
    read: list[str] = []
    fetch_many = queues.Job.fetch_many

    def counting(job_ids, **kwargs):  # type: ignore[no-untyped-def]
        read.extend(job_ids)
        return fetch_many(job_ids, **kwargs)

    monkeypatch.setattr(queues.Job, "fetch_many", counting)
    return read


def test_a_page_of_jobs_reads_only_that_page(
    redis_conn: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [queues.enqueue_training(redis_conn, TRAIN_PARAMS, settings=settings) for _ in range(6)]
    read = _count_job_reads(monkeypatch)
    page, total = queues.list_jobs(redis_conn, offset=0, limit=1)
    assert total == 6
    assert [info["id"] for info in page] == [ids[5]]
    assert read == [ids[5]]


def test_a_status_filtered_page_reads_whole_jobs_only_for_that_page(
    redis_conn: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [queues.enqueue_training(redis_conn, TRAIN_PARAMS, settings=settings) for _ in range(7)]
    for job_id in ids[1::2]:
        queues.cancel_job(redis_conn, job_id)
    running = ids[6]
    fetch(redis_conn, running).set_status(RqJobStatus.STARTED)
    queues.cancel_job(redis_conn, running)  # a running job asked to stop: "canceling"
    fetch(redis_conn, ids[0]).delete()  # expired: pruned from the index on the way
    read = _count_job_reads(monkeypatch)
    page, total = queues.list_jobs(redis_conn, status="canceled", offset=1, limit=1)
    assert total == 3 and [info["id"] for info in page] == [ids[3]]
    assert read == [ids[3]]
    queued, total = queues.list_jobs(redis_conn, status="queued")
    assert total == 2 and [info["id"] for info in queued] == [ids[4], ids[2]]
    canceling, _ = queues.list_jobs(redis_conn, status="canceling")
    assert [info["id"] for info in canceling] == [running]
    assert redis_conn.zcard(queues.JOB_INDEX_KEY) == 6


def test_cancel_queued_job_removes_it_from_the_queue(redis_conn: Redis, settings: Settings) -> None:
    job_id = queues.enqueue_training(redis_conn, TRAIN_PARAMS, settings=settings)

    info = queues.cancel_job(redis_conn, job_id)

    assert info["status"] == "canceled"
    assert queues.queue_for(redis_conn, queues.TRAINING_QUEUE).count == 0
    assert fetch(redis_conn, job_id).get_status() == RqJobStatus.CANCELED
    with pytest.raises(JobNotCancellable):
        queues.cancel_job(redis_conn, job_id)


def test_cancel_running_job_sets_the_flag_and_keeps_earlier_meta(
    redis_conn: Redis, settings: Settings
) -> None:
    job_id = queues.enqueue_training(redis_conn, TRAIN_PARAMS, settings=settings)
    job = fetch(redis_conn, job_id)
    job.set_status(RqJobStatus.STARTED)
    update_job_meta(job, {"progress": {"epoch": 2, "epochs": 5}})

    info = queues.cancel_job(redis_conn, job_id)

    assert info["status"] == "canceling"  # the run stops at its next batch
    assert queues.get_job_info(redis_conn, job_id)["status"] == "canceling"
    assert [job["id"] for job in queues.list_jobs(redis_conn, status="canceling")[0]] == [job_id]
    meta = fetch(redis_conn, job_id).get_meta()
    assert meta["cancel_requested"] is True
    assert meta["progress"] == {"epoch": 2, "epochs": 5}
    assert meta["kind"] == "train"


def test_cancel_missing_or_ended_jobs(redis_conn: Redis, settings: Settings) -> None:
    with pytest.raises(JobNotFound):
        queues.cancel_job(redis_conn, "no-such-job")

    job_id = queues.enqueue_training(redis_conn, TRAIN_PARAMS, settings=settings)
    job = fetch(redis_conn, job_id)
    with redis_conn.pipeline() as pipeline:
        record_job_failure(job, "Traceback ...\nValueError: boom", pipeline)
        pipeline.execute()
    with pytest.raises(JobNotCancellable) as raised:
        queues.cancel_job(redis_conn, job_id)
    assert raised.value.status == 409


def test_error_from_meta_wins_over_the_traceback(redis_conn: Redis, settings: Settings) -> None:
    job_id = queues.enqueue_training(redis_conn, TRAIN_PARAMS, settings=settings)
    job = fetch(redis_conn, job_id)
    with redis_conn.pipeline() as pipeline:
        record_job_failure(
            job,
            "Traceback (most recent call last):\n  ...\nuvac.errors.DatasetError: no files",
            pipeline,
        )
        pipeline.execute()

    info = queues.get_job_info(redis_conn, job_id)
    assert info is not None
    assert info["status"] == "failed"
    assert info["error"] == {"type": "DatasetError", "message": "no files"}

    update_job_meta(job, {"error": {"type": "DatasetNotFound", "message": "No data set 'x'."}})
    info = queues.get_job_info(redis_conn, job_id)
    assert info is not None
    assert info["error"] == {"type": "DatasetNotFound", "message": "No data set 'x'."}


def test_a_job_marked_canceled_in_meta_reads_canceled(
    redis_conn: Redis, settings: Settings
) -> None:
    job_id = queues.enqueue_training(redis_conn, TRAIN_PARAMS, settings=settings)
    job = fetch(redis_conn, job_id)
    job.set_status(RqJobStatus.FINISHED)
    update_job_meta(job, {"canceled": True})

    info = queues.get_job_info(redis_conn, job_id)
    assert info is not None
    assert info["status"] == "canceled"
    assert info["result"] is None
