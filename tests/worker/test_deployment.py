"""Two deployments on one Redis database: refused, not silently sharing jobs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Worker

from service_config import Settings
from tests.worker.conftest import REDIS_URL
from worker import queues
from worker.deployment import (
    DEPLOYMENT_FILE,
    DeploymentConflict,
    deployment_id,
    foreign_workers,
    worker_name,
)

REPOSITORY = Path(__file__).resolve().parents[2]
TRAIN_PARAMS = {"dataset_id": "ds_000000000000", "model_name": "tones"}


@pytest.fixture
def other_deployments_worker(redis_conn: Redis) -> Iterator[Worker]:
    worker = Worker(["training"], name=worker_name("0ther0deploy"), connection=redis_conn)
    worker.register_birth()
    try:
        yield worker
    finally:
        worker.register_death()


def test_a_deployment_id_is_made_once_and_kept_in_the_store(tmp_path: Path) -> None:
    first = deployment_id(tmp_path / "models")
    assert first == deployment_id(tmp_path / "models")
    assert (tmp_path / "models" / DEPLOYMENT_FILE).read_text().strip() == first
    assert deployment_id(tmp_path / "other-models") != first
    assert [p.name for p in (tmp_path / "models").iterdir()] == [DEPLOYMENT_FILE]


def test_enqueuing_is_refused_while_another_deployments_workers_use_the_database(
    redis_conn: Redis, settings: Settings, other_deployments_worker: Worker
) -> None:
    mine = deployment_id(settings.model_store_path)
    assert foreign_workers(redis_conn, mine) == [other_deployments_worker.name]
    with pytest.raises(DeploymentConflict, match="another deployment") as caught:
        queues.enqueue_training(redis_conn, TRAIN_PARAMS, settings=settings)
    assert caught.value.status == 503
    assert queues.queue_for(redis_conn, queues.TRAINING_QUEUE).count == 0


def test_own_workers_do_not_block_enqueuing(redis_conn: Redis, settings: Settings) -> None:
    own = Worker(
        ["training"],
        name=worker_name(deployment_id(settings.model_store_path)),
        connection=redis_conn,
    )
    own.register_birth()
    try:
        job_id = queues.enqueue_training(redis_conn, TRAIN_PARAMS, settings=settings)
    finally:
        own.register_death()
    assert queues.queue_for(redis_conn, queues.TRAINING_QUEUE).get_job_ids() == [job_id]


def test_a_worker_of_another_deployment_refuses_to_start(
    redis_conn: Redis, tmp_path: Path, other_deployments_worker: Worker
) -> None:
    environment = {**os.environ, "UVAC_DATA_DIR": str(tmp_path), "UVAC_REDIS_URL": REDIS_URL}
    finished = subprocess.run(
        [sys.executable, "-m", "worker.main", "--burst"],
        cwd=REPOSITORY, env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert finished.returncode == 1, finished.stderr
    assert "another deployment" in finished.stderr
    assert other_deployments_worker.name in finished.stderr
