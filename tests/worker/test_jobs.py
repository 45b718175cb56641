"""worker.jobs: the failure policy (retry only what may pass, with an in-process RQ worker),
parameter checks, and the re-run and early-cancel paths of a training job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import redis
from redis import Redis
from rq import SimpleWorker
from rq.job import Job
from rq.job import JobStatus as RqJobStatus
from rq.serializers import JSONSerializer

from dataset_store import DatasetStore
from service_config import Settings, get_settings
from tests.worker.audio_samples import write_tone_folder
from worker import queues
from worker.job_support import InvalidJobParameters
from worker.jobs import run_training
from worker.progress import update_job_meta


@pytest.fixture
def worker_environment(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[Settings]:
    # The job functions read their settings from the environment, like a real worker.
    monkeypatch.setenv("UVAC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("UVAC_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("UVAC_TORCH_THREADS", "1")
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def run_burst(redis_conn: Redis, queue_name: str) -> None:
    SimpleWorker([queue_name], connection=redis_conn, serializer=JSONSerializer).work(burst=True)


def test_bad_input_fails_at_once_with_a_readable_error(
    redis_conn: Redis, worker_environment: Settings
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


def test_unknown_parameters_are_bad_input(redis_conn: Redis, worker_environment: Settings) -> None:
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
    redis_conn: Redis, worker_environment: Settings
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


# --- run_training with a stand-in for the engine --------------------------------------


def never_train(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("the training function must not be called")


def queued_training_job(redis_conn: Redis, settings: Settings, dataset_id: str) -> Job:
    job_id = queues.enqueue_training(
        redis_conn, {"dataset_id": dataset_id, "n_clusters": 2}, settings=settings
    )
    return Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)


@pytest.fixture
def dataset_id(settings: Settings, tmp_path: Path) -> str:
    tones = write_tone_folder(tmp_path / "tones", per_class=1)
    return DatasetStore(settings.datasets_path).register_folder(tones).id


def test_a_rerun_after_publishing_returns_the_published_version(
    redis_conn: Redis, settings: Settings, dataset_id: str
) -> None:
    job = queued_training_job(redis_conn, settings, dataset_id)
    published = {"model": "tones:v4", "sha256": "a" * 64, "metrics": {}}
    update_job_meta(job, {"published": published})

    result = run_training(
        {"dataset_id": dataset_id, "n_clusters": 2},
        job=job,
        settings=settings,
        train_function=never_train,
    )
    assert result == published


def test_a_cancel_that_arrived_while_queued_stops_before_training(
    redis_conn: Redis, settings: Settings, dataset_id: str
) -> None:
    job = queued_training_job(redis_conn, settings, dataset_id)
    update_job_meta(job, {"cancel_requested": True})

    result = run_training(
        {"dataset_id": dataset_id, "n_clusters": 2},
        job=job,
        settings=settings,
        train_function=never_train,
    )
    assert result == {"canceled": True}
    assert job.get_meta()["canceled"] is True
    assert queues.job_status(job).value == "canceled"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_clusters": 2}, "missing job parameters: dataset_id"),
        ({"dataset_id": "ds_0123456789ab", "n_clusters": 2, "model_type": "x"}, "model_type"),
        ({"dataset_id": "ds_0123456789ab", "n_clusters": 1}, "n_clusters"),
        ({"dataset_id": "ds_0123456789ab", "n_clusters": 2, "features": {"n_mels": 7}}, "n_mels"),
        # the data set does not exist: the option is refused before it is looked up
        (
            {
                "dataset_id": "ds_0123456789ab",
                "n_clusters": 2,
                "model_hyperparameters": {"gru_hiden": 8},
            },
            "gru_hiden",
        ),
    ],
)
def test_invalid_parameters_are_refused_before_any_work(
    settings: Settings, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidJobParameters, match=message):
        run_training(params, job=None, settings=settings, train_function=never_train)


@pytest.mark.parametrize(
    ("failure", "checkpoints_kept"),
    [(ValueError("bad data"), False), (redis.ConnectionError("Redis went away"), True)],
)
def test_checkpoints_are_kept_only_for_a_retry(
    redis_conn: Redis,
    settings: Settings,
    dataset_id: str,
    failure: Exception,
    checkpoints_kept: bool,
) -> None:
    job = queued_training_job(redis_conn, settings, dataset_id)

    def fail_after_a_checkpoint(*args: object, checkpoint_dir: Path, **kwargs: object) -> NoReturn:
        checkpoint_dir.mkdir(parents=True)
        (checkpoint_dir / "checkpoint.json").write_text("{}")
        raise failure

    with pytest.raises(type(failure)):
        run_training(
            {"dataset_id": dataset_id, "n_clusters": 2},
            job=job,
            settings=settings,
            train_function=fail_after_a_checkpoint,
        )
    assert (settings.checkpoints_path / job.id).exists() is checkpoints_kept
