"""The train request's contract against the real Redis (database 12): the presets, feature
settings and model hyperparameters the schema offers are what the engine and the worker
accept, and what they refuse is a 422 naming the key, before anything is queued."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.schemas import TrainRequest
from app.schemas.hyperparameters import SET_BY_THE_SERVICE, allowed_hyperparameters
from model_store import ModelStore
from service_config import Settings
from tests.app.helpers import LONG_CLIP_SECONDS, assert_problem, train_body, two_clip_dataset
from uvac.audio.feature_config import FRONTENDS, FeatureConfig
from uvac.models import build_model
from uvac.training.config import TrainConfig
from uvac.training.presets import DEFAULT_PRESET, PRESETS


@pytest.fixture
def dataset_id(settings: Settings, tmp_path: Path) -> str:
    return two_clip_dataset(settings.datasets_path, tmp_path, seconds=LONG_CLIP_SECONDS)


TINY_FEATURE_OVERRIDES: dict[str, Any] = {
    "sample_rate": 8000,
    "n_fft": 256,
    "win_length": 200,
    "hop_length": 80,
    "n_mels": 16,
    "window_seconds": 0.5,
    "window_hop_seconds": 0.25,
    "f_max": None,  # an explicit null is a value: the Nyquist frequency
}
TINY_NETWORK = {
    "conv_channels": [2, 2, 2, 2],
    "gru_hidden": 4,
    "gru_layers": 1,
    "deconv_channels": [2, 2, 2],
}


def test_a_tiny_job_with_feature_overrides_is_accepted_and_runs_in_the_worker(
    client: TestClient, dataset_id: str, settings: Settings
) -> None:
    body = train_body(
        dataset_id,
        n_clusters=2,
        preset="paper",
        features=TINY_FEATURE_OVERRIDES,
        epochs=1,
        batch_size=2,
        learning_rate=1e-3,
        final_learning_rate=1e-4,
        model_hyperparameters=TINY_NETWORK,
        model_name="tiny",
    )
    response = client.post("/v1/train", json=body)
    assert response.status_code == 202, response.text
    params = response.json()["params"]
    assert params["preset"] == "paper"
    assert params["features"] == TINY_FEATURE_OVERRIDES
    assert params["model_hyperparameters"] == TINY_NETWORK
    assert (params["learning_rate"], params["final_learning_rate"]) == (1e-3, 1e-4)

    # What the API enqueued is what the worker accepts: run the job's body in-process.
    from service_config import Settings
    from uvac.training.pipeline import train_model
    from worker.jobs import run_training

    worker_settings = Settings(data_dir=settings.data_dir, device="cpu")
    result = run_training(params, job=None, settings=worker_settings, train_function=train_model)
    published = ModelStore(worker_settings.model_store_path).get(result["model"])
    feature_config = published.metadata["feature_config"]
    for key, value in TINY_FEATURE_OVERRIDES.items():
        assert feature_config[key] == value, key
    assert published.metadata["train_config"]["epochs"] == 1  # not the paper preset's 500
    assert published.metadata["train_config"]["learning_rate"] == 1e-3


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"features": {"n_mells": 64}}, "n_mells"),
        ({"features": {"n_mels": 20}}, "n_mels"),  # not a multiple of 16
        ({"features": {"n_fft": 256, "win_length": 400}}, "win_length"),  # the engine's rule
        ({"features": {"sample_rate": None}}, "sample_rate"),  # null is not a rate
        ({"preset": "fastest"}, "preset"),
        ({"model_hyperparameters": {"n_clusters": 3}}, "n_clusters"),
        ({"temperature_start": 0.5, "temperature_end": 1.0}, "temperature_end"),
        ({"preset": "paper", "temperature_end": 2.0}, "temperature_end"),  # vs the preset's 1.0
    ],
)
def test_a_configuration_the_engine_refuses_is_a_422_naming_the_key(
    client: TestClient, dataset_id: str, redis_db: redis.Redis, overrides: dict[str, Any], says: str
) -> None:
    response = client.post("/v1/train", json=train_body(dataset_id, **overrides))
    body = assert_problem(response, status=422, slug="validation-error")
    assert says in body["detail"], body["detail"]
    assert redis_db.keys("rq:job:*") == []  # refused before anything was queued


def test_the_train_schema_offers_the_presets_and_every_feature_setting(
    client: TestClient,
) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    train = schemas["TrainRequest"]["properties"]
    preset_enum = schemas[train["preset"]["$ref"].rsplit("/", 1)[-1]]["enum"]
    assert set(preset_enum) == set(PRESETS)
    assert train["preset"]["default"] == DEFAULT_PRESET
    for name in ("learning_rate", "final_learning_rate", "model_hyperparameters", "batch_size"):
        assert name in train
    assert "temperature_end" in train["temperature_start"]["description"]
    features = schemas["FeatureOverrides"]
    assert features["additionalProperties"] is False
    assert set(features["properties"]) == {field.name for field in fields(FeatureConfig)}
    assert features["properties"]["frontend"]["enum"] == list(FRONTENDS)
    assert all("default" not in spec for spec in features["properties"].values())
    for example in schemas["TrainRequest"]["examples"]:  # the examples are valid requests
        TrainRequest.model_validate(example)


@pytest.mark.parametrize(
    ("model_type", "hyperparameters", "location", "error_type"),
    [
        ("cat-uvac", {"conv_chanels": [8, 16, 32, 64]}, ["conv_chanels"], "unknown"),
        ("uvac-gmm", {"gru_hidden": 64, "latent_size": 8}, ["latent_size"], "unknown"),
        ("cat-uvac", {"n_components": 8}, ["n_components"], "unknown"),
        ("kmeans", {"conv_channels": [8, 16, 32, 64]}, ["conv_channels"], "unknown"),
        ("cat-uvac", {"gru_hidden": "64"}, ["gru_hidden"], "type"),
        ("cat-uvac", {"gru_layers": 1.0}, ["gru_layers"], "type"),
        ("uvac-gmm", {"latent_dim": True}, ["latent_dim"], "type"),
        ("cat-uvac", {"conv_channels": 32}, ["conv_channels"], "type"),
        ("cat-uvac", {"deconv_channels": [32, "16", 8]}, ["deconv_channels", "1"], "type"),
        ("cat-uvac", {"n_mels": 32}, ["n_mels"], "reserved"),
    ],
)
def test_model_hyperparameters_the_model_does_not_take_are_a_422_listing_the_allowed_ones(
    client: TestClient,
    dataset_id: str,
    redis_db: redis.Redis,
    model_type: str,
    hyperparameters: dict[str, Any],
    location: list[str],
    error_type: str,
) -> None:
    body = train_body(dataset_id, model_type=model_type, model_hyperparameters=hyperparameters)
    response = client.post("/v1/train", json=body)
    problem = assert_problem(response, status=422, slug="validation-error", path="/v1/train")
    [error] = problem["errors"]
    assert error["loc"] == ["body", "model_hyperparameters", *location]
    assert error["type"] == f"model_hyperparameter_{error_type}"
    assert location[0] in problem["detail"]
    allowed = allowed_hyperparameters(model_type)
    for name in allowed:
        assert name in error["message"], error["message"]
    if not allowed:
        assert "takes no model_hyperparameters" in error["message"]
    assert redis_db.keys("rq:job:*") == []  # refused before anything was queued


TINY_MLP = {"architecture": "mlp", "hidden_units": [4], "latent_dim": 2}


@pytest.mark.parametrize(
    ("model_type", "from_the_data", "network"),
    [
        ("cat-uvac", {"n_features": 16}, TINY_NETWORK),
        ("uvac-gmm", {"n_features": 16, "n_frames": 16}, TINY_NETWORK),
        ("cat-uvac", {"n_features": 16}, TINY_MLP),
        ("uvac-gmm", {"n_features": 16, "n_frames": 1}, TINY_MLP),
    ],
)
def test_the_options_a_model_reports_are_the_options_a_request_may_set(
    client: TestClient,
    dataset_id: str,
    model_type: str,
    from_the_data: dict[str, int],
    network: dict[str, Any],
) -> None:
    # What the model says rebuilds it (minus what the service sets) is a valid request.
    model = build_model(model_type, n_clusters=2, **from_the_data, **network)
    options = {
        name: value
        for name, value in model.hyperparameters().items()
        if name not in SET_BY_THE_SERVICE
    }
    # Each architecture reports its own options, all of which a request may set.
    assert set(options) <= set(allowed_hyperparameters(model_type))
    assert set(network) <= set(options)
    body = train_body(dataset_id, model_type=model_type, model_hyperparameters=options)
    response = client.post("/v1/train", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["params"]["model_hyperparameters"] == options


@pytest.mark.parametrize("name", sorted(SET_BY_THE_SERVICE))
def test_the_options_the_service_sets_are_the_ones_the_engine_refuses(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        TrainConfig(model_hyperparameters={name: 16})


def test_the_train_schema_names_each_model_types_options(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    description = schemas["TrainRequest"]["properties"]["model_hyperparameters"]["description"]
    for model_type in ("cat-uvac", "uvac-gmm", "kmeans"):
        assert f"`{model_type}`" in description
        for name in allowed_hyperparameters(model_type):
            assert f"`{name}`" in description
