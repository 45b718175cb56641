"""worker.progress: atomic meta merges, throttled progress, the cancel flag."""

from __future__ import annotations

import dataclasses

from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from app.schemas.jobs import JobProgress
from service_config import Settings
from uvac.training.progress import Progress
from worker import queues
from worker.progress import ProgressReporter, update_job_meta


def training_progress(
    epoch: int,
    *,
    step: int = 1,
    loss: float = 10.0,
    accuracy: float | None = None,
    nmi: float | None = None,
    epoch_done: bool = False,
) -> Progress:
    return Progress(
        phase="training", epoch=epoch, epochs=5, step=step, steps=4, loss=loss,
        reconstruction=8.0, kl_z=1.0, kl_y=1.0, balance=0.1, temperature=0.9,
        learning_rate=5e-4, accuracy=accuracy, nmi=nmi, elapsed_seconds=3.0,
        eta_seconds=12.345, epoch_done=epoch_done,
    )  # fmt: skip


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def new_job(redis_conn: Redis, settings: Settings) -> Job:
    job_id = queues.enqueue_training(
        redis_conn, {"dataset_id": "ds_0123456789ab", "n_clusters": 2}, settings=settings
    )
    return Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)


def stored_meta(redis_conn: Redis, job: Job) -> dict:
    return Job.fetch(job.id, connection=redis_conn, serializer=JSONSerializer).get_meta()


def test_update_job_meta_merges_with_what_another_process_wrote(
    redis_conn: Redis, settings: Settings
) -> None:
    worker_copy = new_job(redis_conn, settings)
    api_copy = Job.fetch(worker_copy.id, connection=redis_conn, serializer=JSONSerializer)

    update_job_meta(api_copy, {"cancel_requested": True})
    # The worker's in-memory meta is stale; a plain save_meta() would erase the flag.
    merged = update_job_meta(worker_copy, {"progress": {"epoch": 1}})

    assert merged["cancel_requested"] is True
    assert worker_copy.meta == merged
    assert stored_meta(redis_conn, worker_copy) == merged


def test_update_job_meta_does_not_resurrect_a_deleted_job(
    redis_conn: Redis, settings: Settings
) -> None:
    job = new_job(redis_conn, settings)
    job.delete()
    update_job_meta(job, {"progress": {"epoch": 1}})
    assert not redis_conn.exists(job.key)


def test_progress_is_throttled_but_every_epoch_end_is_written(
    redis_conn: Redis, settings: Settings
) -> None:
    job = new_job(redis_conn, settings)
    clock = FakeClock()
    reporter = ProgressReporter(job, interval_seconds=2.0, cancel_poll_seconds=0.5, clock=clock)

    reporter(training_progress(epoch=3, step=1))
    progress = stored_meta(redis_conn, job)["progress"]
    assert progress["epoch"] == 3 and progress["step"] == 1 and progress["steps"] == 4
    assert progress["eta_seconds"] == 12.3
    assert stored_meta(redis_conn, job)["resumed_from_epoch"] == 2

    clock.now += 0.5
    reporter(training_progress(epoch=3, step=2))  # too soon: not written
    assert stored_meta(redis_conn, job)["progress"]["step"] == 1

    clock.now += 0.1
    reporter(training_progress(epoch=3, step=4, epoch_done=True, accuracy=0.75, nmi=0.5))
    progress = stored_meta(redis_conn, job)["progress"]
    assert progress["step"] == 4 and progress["accuracy"] == 0.75 and progress["nmi"] == 0.5

    clock.now += 2.5
    reporter(training_progress(epoch=4, step=1, loss=float("nan")))
    progress = stored_meta(redis_conn, job)["progress"]
    assert progress["epoch"] == 4 and progress["loss"] is None  # NaN is not JSON
    assert set(progress) == {field.name for field in dataclasses.fields(Progress)}
    assert progress["phase"] == "training" and progress["updated_at"]
    assert JobProgress(**progress) == dataclasses.replace(
        training_progress(epoch=4, loss=float("nan")),
        loss=None,
        eta_seconds=12.3,
        updated_at=progress["updated_at"],
    )  # the API's schema reads back the record the loop reported


def test_should_stop_polls_redis_at_most_every_interval(
    redis_conn: Redis, settings: Settings
) -> None:
    job = new_job(redis_conn, settings)
    clock = FakeClock()
    reporter = ProgressReporter(job, interval_seconds=2.0, cancel_poll_seconds=0.5, clock=clock)
    assert reporter.should_stop() is False

    queues.cancel_job(redis_conn, job.id)  # queued: RQ cancel plus the flag
    clock.now += 0.2
    assert reporter.should_stop() is False  # answered from memory
    clock.now += 0.4
    assert reporter.should_stop() is True
    clock.now += 0.01
    assert reporter.should_stop() is True  # stays stopped


def test_a_redis_outage_does_not_break_the_training_loop(
    redis_conn: Redis, settings: Settings
) -> None:
    job = new_job(redis_conn, settings)
    # Nothing listens on port 1; no retries, so the test stays fast.
    job.connection = Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    reporter = ProgressReporter(job, interval_seconds=0.0, cancel_poll_seconds=0.0)

    reporter(training_progress(epoch=1))  # logged, not raised
    assert reporter.should_stop() is False
    assert reporter.write({"x": 1}) is False


def test_an_interrupt_stops_the_run_and_is_told_apart_from_a_cancel(
    redis_conn: Redis, settings: Settings
) -> None:
    job = new_job(redis_conn, settings)
    reporter = ProgressReporter(job, interval_seconds=2.0, cancel_poll_seconds=0.0)
    assert reporter.should_stop() is False and reporter.interrupted is False

    update_job_meta(job, {"interrupt_requested": True})
    assert reporter.should_stop() is True
    assert reporter.interrupted is True

    update_job_meta(job, {"cancel_requested": True})  # a cancel wins: no requeue
    assert reporter.should_stop() is True
    assert reporter.interrupted is False


def test_a_sweeps_progress_reaches_the_api_whole() -> None:
    record = dataclasses.replace(
        training_progress(epoch=2),
        phase="sweep",
        candidates_done=1,
        candidates=3,
        runs_done=4,
        runs=9,
        candidate={"n_clusters": 4},
        seed=1,
        updated_at="2026-01-01T00:00:00+00:00",
    )
    document = record.to_document()
    assert JobProgress(**document) == dataclasses.replace(record, eta_seconds=12.3)
