"""Fixtures for the API tests: a tmp model store holding a tiny real model, settings that
point at it and at Redis database 12, and a TestClient running the app's lifespan."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from model_store import AnyModelStore, ModelStore, ModelVersion
from service_config import Settings
from tests.redis_address import redis_url_for_tests
from uvac.audio.feature_config import FeatureConfig
from uvac.audio.features import NormStats
from uvac.models import CatUVAC
from uvac.training.artifact import TrainedModel, save_trained_model

REDIS_TEST_URL = redis_url_for_tests(12)
# A port nothing listens on: Redis "down" for the tests that need it.
UNUSED_REDIS_URL = "redis://127.0.0.1:6399/0"
SAMPLE_RATE = 8000
N_CLUSTERS = 3

TINY_FEATURES = FeatureConfig(
    sample_rate=SAMPLE_RATE,
    n_fft=256,
    win_length=200,
    hop_length=80,
    n_mels=16,
    window_seconds=0.5,
    window_hop_seconds=0.25,
)


def tiny_trained_model(*, seed: int = 0, n_clusters: int = N_CLUSTERS) -> TrainedModel:
    """An untrained CatUVAC small enough to run in a millisecond on one thread."""
    torch.manual_seed(seed)
    model = CatUVAC(
        n_clusters=n_clusters,
        n_features=TINY_FEATURES.n_mels,
        conv_channels=(2, 2, 2, 2),
        gru_hidden=4,
        gru_layers=1,
        deconv_channels=(2, 2, 2),
    )
    model.eval()
    stats = NormStats(
        mean=torch.full((TINY_FEATURES.n_mels,), -40.0),
        std=torch.full((TINY_FEATURES.n_mels,), 20.0),
        minimum=-3.0,
        maximum=3.0,
    )
    return TrainedModel(
        model=model, feature_config=TINY_FEATURES, norm_stats=stats, info={"seed": seed}
    )


def publish_tiny_model(
    store: AnyModelStore,
    *,
    name: str = "scenes",
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
    alias: str | None = "production",
) -> ModelVersion:
    with store.publish(name, metadata=metadata or {"seed": seed}) as staging:
        save_trained_model(Path(staging), tiny_trained_model(seed=seed))
    version = staging.version
    if alias is not None:
        store.promote(version.ref, alias)
    return version


@pytest.fixture(autouse=True)
def _torch_single_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "redis_url": REDIS_TEST_URL,
        "device": "cpu",
        "model_poll_seconds": 0.1,
        "inference_max_wait_ms": 1.0,
        "redis_timeout_seconds": 0.5,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


@pytest.fixture
def served_version(store: ModelStore) -> ModelVersion:
    return publish_tiny_model(store)


@pytest.fixture
def settings(tmp_path: Path, redis_db: redis.Redis) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def client(settings: Settings, served_version: ModelVersion) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def empty_client(settings: Settings) -> Iterator[TestClient]:
    """An app whose store has no model yet."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client
