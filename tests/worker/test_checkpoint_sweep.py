"""worker.checkpoint_sweep: checkpoint folders of jobs Redis has forgotten go after a grace.

Against the real Redis (database 11): jobs are enqueued, started or deleted there, and the
folders are made old by moving their modification times back.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from redis import Redis
from rq.job import Job
from rq.job import JobStatus as RqJobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from service_config import Settings
from worker import queues
from worker.checkpoint_sweep import sweep_orphan_checkpoints
from worker.recovery import RecoveryThread

PARAMS = {"dataset_id": "ds_0123456789ab", "n_clusters": 2}
UNKNOWN_JOB = "0f6a4c1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b"


def checkpoint_folder(settings: Settings, job_id: str, *, age: float) -> Path:
    """A job's checkpoint folder whose folder and files last changed ``age`` seconds ago."""
    folder = settings.checkpoints_path / job_id
    folder.mkdir(parents=True)
    for name in ("checkpoint.json", "checkpoint-epoch0003.safetensors"):
        (folder / name).write_text("{}")
    moment = time.time() - age
    for path in (*folder.iterdir(), folder):
        os.utime(path, (moment, moment))
    return folder


@pytest.fixture
def old(settings: Settings) -> float:
    return settings.orphan_checkpoint_grace_seconds + 60.0


def test_the_folder_of_an_unknown_job_older_than_the_grace_is_deleted_and_logged(
    redis_conn: Redis, settings: Settings, old: float, caplog: pytest.LogCaptureFixture
) -> None:
    folder = checkpoint_folder(settings, UNKNOWN_JOB, age=old)

    with caplog.at_level(logging.INFO, logger="worker.checkpoint_sweep"):
        removed = sweep_orphan_checkpoints(redis_conn, settings=settings)

    assert removed == [UNKNOWN_JOB]
    assert not folder.exists()
    assert list(settings.checkpoints_path.iterdir()) == []  # no hidden leftover either
    assert any(UNKNOWN_JOB in record.getMessage() for record in caplog.records)
    assert sweep_orphan_checkpoints(redis_conn, settings=settings) == []


def test_the_folder_of_an_unknown_job_within_the_grace_is_kept(
    redis_conn: Redis, settings: Settings
) -> None:
    young = settings.orphan_checkpoint_grace_seconds - 60.0
    folder = checkpoint_folder(settings, UNKNOWN_JOB, age=young)

    assert sweep_orphan_checkpoints(redis_conn, settings=settings) == []
    assert folder.exists()


def test_a_file_written_recently_keeps_an_old_folder(
    redis_conn: Redis, settings: Settings, old: float
) -> None:
    folder = checkpoint_folder(settings, UNKNOWN_JOB, age=old)
    now = time.time()
    os.utime(folder / "checkpoint.json", (now, now))  # rewritten in place a moment ago

    assert sweep_orphan_checkpoints(redis_conn, settings=settings) == []
    assert folder.exists()


def test_the_folders_of_jobs_redis_still_has_are_kept_however_old(
    redis_conn: Redis, settings: Settings, old: float
) -> None:
    queued = queues.enqueue_training(redis_conn, PARAMS, settings=settings)
    failed = queues.enqueue_training(redis_conn, PARAMS, settings=settings)
    Job.fetch(failed, connection=redis_conn, serializer=JSONSerializer).set_status(
        RqJobStatus.FAILED  # a failed job may yet be taken back by the recovery sweep
    )
    folders = [checkpoint_folder(settings, job_id, age=old) for job_id in (queued, failed)]

    assert sweep_orphan_checkpoints(redis_conn, settings=settings) == []
    assert all(folder.exists() for folder in folders)


def test_a_job_still_queued_or_started_keeps_its_folder_without_its_record(
    redis_conn: Redis, settings: Settings, old: float
) -> None:
    queued = queues.enqueue_training(redis_conn, PARAMS, settings=settings)
    started = "5e0b9d2c-7a41-4c3e-9f10-2d3c4b5a6f70"
    registry = StartedJobRegistry(queues.TRAINING_QUEUE, connection=redis_conn)
    redis_conn.zadd(registry.key, {f"{started}:execution1": time.time() + 60})
    redis_conn.delete(f"rq:job:{queued}")  # records gone, ids still listed
    folders = [checkpoint_folder(settings, job_id, age=old) for job_id in (queued, started)]

    assert sweep_orphan_checkpoints(redis_conn, settings=settings) == []
    assert all(folder.exists() for folder in folders)


def test_entries_that_are_not_job_folders_are_left_alone(
    redis_conn: Redis, settings: Settings, old: float
) -> None:
    root = settings.checkpoints_path
    (root / "lost+found").mkdir(parents=True)
    (root / ".cache").mkdir()
    (root / "notes.txt").write_text("keep me")
    elsewhere = root.parent / "elsewhere"
    elsewhere.mkdir()
    (root / "6b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e").symlink_to(elsewhere)
    moment = time.time() - old
    for path in root.iterdir():
        os.utime(path, (moment, moment), follow_symlinks=False)

    assert sweep_orphan_checkpoints(redis_conn, settings=settings) == []
    assert len(list(root.iterdir())) == 4
    assert elsewhere.exists()


def test_a_half_deleted_leftover_of_an_earlier_sweep_is_finished(
    redis_conn: Redis, settings: Settings
) -> None:
    leftover = settings.checkpoints_path / f".removing-{UNKNOWN_JOB}-0a1b2c3d"
    leftover.mkdir(parents=True)
    (leftover / "checkpoint.json").write_text("{}")

    assert sweep_orphan_checkpoints(redis_conn, settings=settings) == []
    assert not leftover.exists()


def test_no_checkpoints_folder_is_nothing_to_do(redis_conn: Redis, settings: Settings) -> None:
    assert not settings.checkpoints_path.exists()
    assert sweep_orphan_checkpoints(redis_conn, settings=settings) == []


def test_the_recovery_thread_runs_the_sweep(
    redis_conn: Redis, settings: Settings, old: float
) -> None:
    orphan = checkpoint_folder(settings, UNKNOWN_JOB, age=old)
    live = checkpoint_folder(
        settings, queues.enqueue_training(redis_conn, PARAMS, settings=settings), age=old
    )
    thread = RecoveryThread(settings=settings, queue_names=queues.QUEUE_NAMES)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while orphan.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        thread.stop()
        thread.join(timeout=10)
    assert not orphan.exists()
    assert live.exists()
