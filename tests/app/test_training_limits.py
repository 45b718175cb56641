"""Training requests: every number has a range, and what a request costs together is checked
when it is submitted, so that an accepted job can run within a worker's memory."""

from __future__ import annotations

import inspect
import time
import typing
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from app.main import create_app
from app.schemas import TrainRequest
from app.schemas.hyperparameters import OPTION_BOUNDS
from dataset_store import DatasetStore
from service_config import Settings
from tests.app.conftest import make_settings
from tests.app.helpers import LONG_CLIP_SECONDS, assert_problem, tone_wav, two_clip_dataset
from uvac.models import MODEL_TYPES, model_options


@pytest.fixture
def dataset_id(settings: Settings, tmp_path: Path) -> str:
    return two_clip_dataset(settings.datasets_path, tmp_path, seconds=LONG_CLIP_SECONDS)


def _numbers_without_both_bounds(
    schema: dict[str, Any], defs: dict[str, Any], path: str
) -> list[str]:
    """Every integer or number in ``schema`` (refs and unions followed) that lacks a bound."""
    if "$ref" in schema:
        return _numbers_without_both_bounds(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, path)
    missing = []
    for option in schema.get("anyOf", []):
        missing += _numbers_without_both_bounds(option, defs, path)
    if schema.get("type") in ("integer", "number"):
        low = "minimum" in schema or "exclusiveMinimum" in schema
        high = "maximum" in schema or "exclusiveMaximum" in schema
        if not (low and high):
            missing.append(path)
    for name, field in schema.get("properties", {}).items():
        missing += _numbers_without_both_bounds(field, defs, f"{path}.{name}")
    if "items" in schema:
        missing += _numbers_without_both_bounds(schema["items"], defs, f"{path}[]")
    return missing


def test_every_number_of_a_training_request_has_a_range() -> None:
    schema = TrainRequest.model_json_schema()
    assert _numbers_without_both_bounds(schema, schema.get("$defs", {}), "body") == []


def _is_numeric(hint: Any) -> bool:
    if hint in (int, float):
        return True
    return any(_is_numeric(argument) for argument in typing.get_args(hint))


@pytest.mark.parametrize("model_type", sorted(MODEL_TYPES))
def test_every_numeric_model_option_has_a_range(model_type: str) -> None:
    hints = typing.get_type_hints(MODEL_TYPES[model_type].__init__)
    numeric = {name for name in model_options(model_type) if _is_numeric(hints.get(name))}
    assert numeric - set(OPTION_BOUNDS) == set()
    assert inspect.signature(MODEL_TYPES[model_type].__init__)  # the constructor is readable


@pytest.mark.parametrize(
    ("overrides", "location"),
    [
        ({"seed": 10**30}, ["seed"]),
        ({"seed": 2**32}, ["seed"]),
        ({"lambda_kl": 1e300}, ["lambda_kl"]),
        ({"temperature_start": 1e9}, ["temperature_start"]),
        ({"features": {"f_max": 1e12}}, ["features", "f_max"]),
        ({"features": {"cepstral_coefficients": 10**6}}, ["features", "cepstral_coefficients"]),
        ({"model_hyperparameters": {"gru_hidden": 10**7}}, ["model_hyperparameters", "gru_hidden"]),
        (
            {"model_hyperparameters": {"conv_channels": [100000, 16, 16, 16]}},
            ["model_hyperparameters", "conv_channels", "0"],
        ),
        ({"model_hyperparameters": {"gru_layers": 0}}, ["model_hyperparameters", "gru_layers"]),
        (
            {"model_hyperparameters": {"hidden_units": [64] * 100}},
            ["model_hyperparameters", "hidden_units"],
        ),
    ],
)
def test_a_number_out_of_range_is_a_422_naming_it(
    client: TestClient,
    dataset_id: str,
    redis_db: redis.Redis,
    overrides: dict[str, Any],
    location: list[str],
) -> None:
    body = {"dataset_id": dataset_id, "model_type": "cat-uvac", "n_clusters": 4, **overrides}
    problem = assert_problem(
        client.post("/v1/train", json=body), status=422, slug="validation-error"
    )
    assert ["body", *location] in [error["loc"] for error in problem["errors"]], problem
    assert redis_db.keys("rq:job:*") == []


def _assert_too_large(response: httpx.Response) -> None:
    problem = assert_problem(response, status=422, slug="validation-error")
    (error,) = problem["errors"]
    assert error["type"] == "training_too_large"
    assert "GiB" in error["message"] and "batch_size" in error["message"]


def test_a_window_of_millions_of_frames_is_refused_at_once(
    client: TestClient, dataset_id: str, redis_db: redis.Redis
) -> None:
    features = {"window_seconds": 60, "hop_length": 1}
    body = {
        "dataset_id": dataset_id,
        "n_clusters": 4,
        "preset": "scenes-logmel",
        "features": features,
    }
    started = time.monotonic()
    _assert_too_large(client.post("/v1/train", json=body))
    assert time.monotonic() - started < 30
    assert redis_db.keys("rq:job:*") == []


def test_a_network_too_wide_for_the_workers_memory_is_refused(
    tmp_path: Path, redis_db: redis.Redis, served_version: object
) -> None:
    settings = make_settings(tmp_path, max_training_memory_bytes=256 * 1024 * 1024)
    dataset = two_clip_dataset(settings.datasets_path, tmp_path, seconds=LONG_CLIP_SECONDS)
    body = {"dataset_id": dataset, "n_clusters": 4, "preset": "scenes-logmel"}
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/train", json=body).status_code == 202
        queued = redis_db.keys("rq:job:*")
        wide = {**body, "model_hyperparameters": {"conv_channels": [512, 512, 512, 512]}}
        _assert_too_large(client.post("/v1/train", json=wide))
        assert redis_db.keys("rq:job:*") == queued


def test_a_model_that_cannot_be_built_is_a_422_at_submission(
    client: TestClient, dataset_id: str, redis_db: redis.Redis
) -> None:
    body = {
        "dataset_id": dataset_id,
        "n_clusters": 4,
        "preset": "scenes-logmel",
        "model_hyperparameters": {"conv_channels": [8, 16]},  # the network has four layers
    }
    problem = assert_problem(
        client.post("/v1/train", json=body), status=422, slug="validation-error"
    )
    (error,) = problem["errors"]
    assert error["loc"] == ["body", "model_hyperparameters"]
    assert redis_db.keys("rq:job:*") == []


@pytest.mark.parametrize("preset", ["paper", "scenes-logmel", "words-logmel"])
def test_the_presets_fit_within_the_default_limit(
    client: TestClient, dataset_id: str, preset: str
) -> None:
    # words-logmel fits each clip into one window, so two clips hold two clusters at most.
    body = {"dataset_id": dataset_id, "n_clusters": 2, "preset": preset}
    response = client.post("/v1/train", json=body)
    assert response.status_code == 202, response.text


def test_more_clusters_than_the_windows_of_the_data_set_is_a_422_at_submission(
    client: TestClient, settings: Settings, tmp_path: Path, redis_db: redis.Redis
) -> None:
    # Ten half-second clips, five per label: one window each; 20% held out (one per label)
    # leaves eight windows to train on.
    source = tmp_path / "ten"
    for index in range(10):
        folder = source / ("tone" if index < 5 else "noise")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}.wav").write_bytes(tone_wav(0.5, hz=200.0 + 50 * index))
    dataset = DatasetStore(settings.datasets_path).register_folder(source).id
    response = client.post("/v1/train", json={"dataset_id": dataset, "n_clusters": 9})
    body = assert_problem(response, status=422, slug="validation-error")
    assert body["errors"][0]["loc"] == ["body", "n_clusters"]
    assert "9 clusters cannot be learnt from 8 windows" in body["detail"]
    assert "2 of 10 are held out" in body["detail"]
    assert redis_db.keys("rq:job:*") == []  # nothing was queued
    # The same K fits once nothing is held out; a range is sized by its largest K.
    fits = {"dataset_id": dataset, "n_clusters": 9, "held_out_share": 0}
    assert client.post("/v1/train", json=fits).status_code == 202
    too_wide = {"dataset_id": dataset, "n_clusters": {"min": 2, "max": 9}}
    assert_problem(client.post("/v1/train", json=too_wide), status=422, slug="validation-error")
