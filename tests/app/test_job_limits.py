"""Every job kind is sized by training's rule when it is submitted (the decoder and the encoder
included), and what a data set's manifest already tells is checked then, not in the worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from app.main import create_app
from dataset_store import DatasetStore
from model_store import ModelStore
from service_config import Settings
from tests.app.conftest import make_settings, publish_tiny_model, tiny_trained_model
from tests.app.helpers import LONG_CLIP_SECONDS, assert_problem, tone_wav, two_clip_dataset
from uvac.edge import DistillConfig

MIB = 1024 * 1024


def _described_teacher(store: ModelStore) -> str:
    """A teacher whose metadata describes its model, as every worker-published version's does."""
    trained = tiny_trained_model(seed=0)
    metadata = {
        "model_type": trained.model_type,
        "n_clusters": trained.n_clusters,
        "hyperparameters": trained.model.hyperparameters(),
        "feature_config": trained.feature_config.to_dict(),
    }
    return publish_tiny_model(store, name="teacher", metadata=metadata, alias=None).ref


def _refused(response: httpx.Response, kind: str) -> dict[str, Any]:
    problem = assert_problem(response, status=422, slug="validation-error")
    (error,) = problem["errors"]
    assert error["type"] == kind, problem
    return problem


@pytest.mark.parametrize("limit_mib", [4, 8])
def test_a_distillation_is_sized_like_a_training(
    tmp_path: Path, redis_db: redis.Redis, limit_mib: int
) -> None:
    settings = make_settings(tmp_path, max_training_memory_bytes=limit_mib * MIB)
    store = ModelStore(settings.model_store_path)
    publish_tiny_model(store)
    teacher = _described_teacher(store)
    # Two 40 s clips: 10 MB of samples at the student's 16 kHz, held for every epoch.
    dataset = two_clip_dataset(settings.datasets_path, tmp_path, seconds=LONG_CLIP_SECONDS)
    body = {"teacher_ref": teacher, "dataset_id": dataset}
    with TestClient(create_app(settings)) as client:
        problem = _refused(client.post("/v1/distill", json=body), "distillation_too_large")
        assert "the recordings decoded at the student's rate" in problem["detail"]
        assert "batch_size" in problem["detail"]
        assert redis_db.keys("rq:job:*") == []
    roomy = make_settings(tmp_path, max_training_memory_bytes=1024 * MIB)
    with TestClient(create_app(roomy)) as client:
        assert client.post("/v1/distill", json=body).status_code == 202


def test_an_evaluation_and_a_preparation_are_sized_too(
    tmp_path: Path, redis_db: redis.Redis
) -> None:
    settings = make_settings(tmp_path, max_training_memory_bytes=2 * MIB)
    store = ModelStore(settings.model_store_path)
    publish_tiny_model(store)
    teacher = _described_teacher(store)
    dataset = two_clip_dataset(settings.datasets_path, tmp_path, seconds=LONG_CLIP_SECONDS)
    with TestClient(create_app(settings)) as client:
        evaluation = {"model_ref": teacher, "dataset_id": dataset, "split": "all"}
        problem = _refused(client.post("/v1/evaluate", json=evaluation), "evaluation_too_large")
        assert "K-means baselines" in problem["detail"]
        # The sound encoder's weights and activations alone are more than 2 MiB.
        preparation = {"dataset_id": dataset, "preset": "scenes"}
        problem = _refused(client.post("/v1/prepare", json=preparation), "preparation_too_large")
        assert "encoder" in problem["detail"]
        assert redis_db.keys("rq:job:*") == []


def test_training_on_an_encoder_counts_the_encoder(tmp_path: Path, redis_db: redis.Redis) -> None:
    # Two short clips: the windows, the model and its step are small; the encoder is not.
    settings = make_settings(tmp_path, max_training_memory_bytes=48 * MIB)
    publish_tiny_model(ModelStore(settings.model_store_path))
    dataset = two_clip_dataset(settings.datasets_path, tmp_path, seconds=0.5)
    body = {
        "dataset_id": dataset, "n_clusters": 2, "preset": "scenes", "held_out_share": 0,
        "model_hyperparameters": {"hidden_units": [8]}, "batch_size": 2,
    }  # fmt: skip
    with TestClient(create_app(settings)) as client:
        problem = _refused(client.post("/v1/train", json=body), "training_too_large")
        assert "decoder and encoder" in problem["detail"]


def test_a_distillation_learning_rate_below_the_default_final_rate_runs(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    dataset = two_clip_dataset(settings.datasets_path, tmp_path)
    body = {"teacher_ref": "scenes@production", "dataset_id": dataset, "learning_rate": 1e-5}
    assert client.post("/v1/distill", json=body).status_code == 202
    # What the worker builds from these parameters: the schedule ends below the start.
    config = DistillConfig.from_dict({"learning_rate": 1e-5})
    assert 0 < config.final_learning_rate < config.learning_rate == 1e-5
    assert DistillConfig.from_dict({"learning_rate": 0.01}).final_learning_rate == pytest.approx(
        DistillConfig().final_learning_rate
    )


def test_a_sweep_on_one_recording_is_a_422_at_submission(
    client: TestClient, settings: Settings, tmp_path: Path, redis_db: redis.Redis
) -> None:
    source = tmp_path / "one"
    source.mkdir()
    (source / "a.wav").write_bytes(tone_wav(LONG_CLIP_SECONDS))
    dataset = DatasetStore(settings.datasets_path).register_folder(source).id
    body = {"dataset_id": dataset, "n_clusters": {"min": 2, "max": 3}, "preset": "scenes-logmel"}
    problem = _refused(client.post("/v1/train", json=body), "sweep_too_few_recordings")
    assert problem["errors"][0]["loc"] == ["body", "n_clusters"]
    assert "at least 2 training recordings" in problem["detail"]
    assert redis_db.keys("rq:job:*") == []
    # One K on the same recording is a training like any other.
    single = {**body, "n_clusters": 2}
    assert client.post("/v1/train", json=single).status_code == 202


def test_more_clusters_than_the_evaluated_windows_is_a_422_at_submission(
    client: TestClient, settings: Settings, tmp_path: Path, store: ModelStore
) -> None:
    teacher = _described_teacher(store)  # three clusters
    dataset = two_clip_dataset(settings.datasets_path, tmp_path, seconds=0.5)  # two windows
    body = {"model_ref": teacher, "dataset_id": dataset, "split": "all"}
    problem = _refused(client.post("/v1/evaluate", json=body), "too_few_windows")
    assert problem["errors"][0]["loc"] == ["body", "dataset_id"]
