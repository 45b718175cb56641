"""UvacWorker's failure and shutdown paths: a job the horse already handed back is not failed
as well, and a warm shutdown request is carried out whole."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.timeouts import HorseMonitorTimeoutException, UnixSignalDeathPenalty

from service_config import Settings
from worker import queues, runner
from worker.main import build_worker
from worker.progress import update_job_meta
from worker.rq_failures import HORSE_LOST_PREFIX

HORSE_LOST = HORSE_LOST_PREFIX + "; waitpid returned None; "
_HANDLED_SIGNALS = (signal.SIGALRM, signal.SIGINT, signal.SIGTERM)


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


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    """The test process's handlers back as they were: RQ's stop handler replaces them."""
    saved = {number: signal.getsignal(number) for number in _HANDLED_SIGNALS}
    try:
        yield
    finally:
        signal.alarm(0)
        for number, handler in saved.items():
            signal.signal(number, handler)


@pytest.mark.timeout(60, method="thread")  # the test owns SIGALRM, pytest-timeout's default
def test_the_monitor_alarm_during_a_warm_shutdown_request_does_not_cut_it_short(
    redis_conn: Redis, settings: Settings, signal_handlers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RQ wakes its horse monitor with a SIGALRM that raises; if it lands inside the SIGTERM
    handler, the job must still be asked to stop and the worker must still stop after it."""
    job, queue = _job_and_queue(redis_conn, settings)
    queue.remove(job)
    job.set_status(JobStatus.STARTED)
    worker = _worker(redis_conn, settings)
    worker.prepare_execution(job)  # as RQ does before forking the horse: the worker is busy

    def meta_write_hit_by_the_alarm(*args: Any, **kwargs: Any) -> Any:
        signal.raise_signal(signal.SIGALRM)
        return update_job_meta(*args, **kwargs)

    monkeypatch.setattr(runner, "update_job_meta", meta_write_hit_by_the_alarm)
    penalty = UnixSignalDeathPenalty(3600, HorseMonitorTimeoutException)
    with penalty:
        with pytest.raises(HorseMonitorTimeoutException):  # the monitor is still woken, after
            worker.request_stop(signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGALRM) == penalty.handle_death_penalty

    assert worker.shutdown_requested_date is not None  # stops once the horse is done
    assert job.get_meta(refresh=True)["interrupt_requested"] is True


@pytest.mark.timeout(60, method="thread")
def test_the_monitor_alarm_during_a_cold_shutdown_does_not_keep_the_worker_alive(
    redis_conn: Redis, settings: Settings, signal_handlers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second signal kills the horse and exits; an alarm while it waits for the dead horse
    must not turn that into carrying on."""
    job, queue = _job_and_queue(redis_conn, settings)
    queue.remove(job)
    job.set_status(JobStatus.STARTED)
    worker = _worker(redis_conn, settings)
    worker.prepare_execution(job)
    # A stand-in horse in a session of its own: the cold stop kills the horse's process group.
    horse = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             start_new_session=True)  # fmt: skip
    monkeypatch.setattr(worker, "_horse_pid", horse.pid)
    wait_for_horse = worker.wait_for_horse
    reaped: list[int | None] = []

    def wait_hit_by_the_alarm() -> Any:
        signal.raise_signal(signal.SIGALRM)
        pid, status, rusage = wait_for_horse()
        reaped.append(status)
        return pid, status, rusage

    monkeypatch.setattr(worker, "wait_for_horse", wait_hit_by_the_alarm)
    try:
        with UnixSignalDeathPenalty(3600, HorseMonitorTimeoutException):
            with contextlib.suppress(HorseMonitorTimeoutException):
                worker.request_stop(signal.SIGTERM, None)  # the first signal: warm
            time.sleep(1.1)  # RQ ignores a second signal within a second of the first
            with pytest.raises(SystemExit):
                worker.request_force_stop(signal.SIGTERM, None)
        (status,) = reaped
        assert status is not None and os.WTERMSIG(status) == signal.SIGKILL  # the horse was killed
    finally:
        if horse.poll() is None:
            horse.kill()
            horse.wait()


def _exc_info(error: Exception) -> tuple[Any, ...]:
    try:
        raise error
    except Exception:
        return sys.exc_info()


def test_a_job_failing_on_its_input_is_logged_without_a_traceback(
    redis_conn: Redis, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from uvac.errors import DatasetError

    job, _ = _job_and_queue(redis_conn, settings)
    worker = _worker(redis_conn, settings)
    caplog.set_level(logging.DEBUG)
    worker.handle_exception(job, *_exc_info(DatasetError("no decodable recordings")))
    user_lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(user_lines) == 1
    assert "no decodable recordings" in user_lines[0].getMessage()
    assert "Traceback" not in caplog.text and user_lines[0].exc_info is None

    caplog.clear()
    worker.handle_exception(job, *_exc_info(RuntimeError("a bug")))
    assert "Traceback" in caplog.text  # a 5xx keeps its traceback


def test_user_errors_are_the_4xx_domain_errors() -> None:
    from model_store import NotFound
    from uvac.errors import AudioTooLongError, UvacError

    assert runner.is_user_error(NotFound("x")) and runner.is_user_error(AudioTooLongError("x"))
    assert not runner.is_user_error(UvacError("x"))  # 500
    assert not runner.is_user_error(RuntimeError("x")) and not runner.is_user_error(None)
