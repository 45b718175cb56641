"""Job routes against the real Redis (database 12): submit, idempotency, list, get, cancel,
and 503 + Retry-After when Redis is down. No worker runs here: jobs stay queued."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.main import create_app
from app.schemas import TrainRequest
from app.schemas.hyperparameters import SET_BY_THE_SERVICE, allowed_hyperparameters
from dataset_store import DatasetStore
from model_store import InvalidReference, ModelStore
from model_store.refs import parse_ref
from service_config import Settings
from tests.app.conftest import UNUSED_REDIS_URL, make_settings
from tests.app.helpers import assert_problem, noise_wav, tone_wav, two_clip_dataset
from uvac.feature_config import FRONTENDS, FeatureConfig
from uvac.models import build_model
from uvac.presets import DEFAULT_PRESET, PRESETS
from uvac.train_config import TrainConfig


@pytest.fixture
def dataset_id(settings: Settings, tmp_path: Path) -> str:
    return two_clip_dataset(settings.datasets_path, tmp_path)


def _train_body(dataset_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"dataset_id": dataset_id, "model_type": "cat-uvac", "n_clusters": 4}
    body.update(overrides)
    return body


def test_train_answers_202_with_the_job_location(client: TestClient, dataset_id: str) -> None:
    response = client.post("/v1/train", json=_train_body(dataset_id, epochs=3, seed=1))
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["kind"] == "train"
    assert job["status"] == "queued"
    assert job["params"] == {
        "dataset_id": dataset_id,
        "model_type": "cat-uvac",
        "n_clusters": 4,
        "model_name": "scenes",
        "epochs": 3,
        "seed": 1,
    }
    fetched = client.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json()["id"] == job["id"]
    assert fetched.json()["enqueued_at"] is not None


def test_the_legacy_train_path_is_the_same_handler(client: TestClient, dataset_id: str) -> None:
    response = client.post("/train", json=_train_body(dataset_id))
    assert response.status_code == 202
    assert response.headers["location"].startswith("/v1/jobs/")


def test_train_on_an_unknown_dataset_is_404(client: TestClient, redis_db: redis.Redis) -> None:
    response = client.post("/v1/train", json=_train_body("ds_000000000000"))
    assert_problem(response, status=404, slug="dataset-not-found", path="/v1/train")
    assert redis_db.keys("rq:job:*") == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"n_clusters": 1}, "n_clusters"),
        ({"model_type": "transformer"}, "model_type"),
        ({"model_name": "Bad Name"}, "model_name"),
        ({"epochs": 0}, "epochs"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_invalid_train_bodies_are_validation_problems(
    client: TestClient, dataset_id: str, overrides: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/train", json=_train_body(dataset_id, **overrides))
    body = assert_problem(response, status=422, slug="validation-error")
    assert any(error["loc"][-1] == field for error in body["errors"]), body["errors"]


def test_an_idempotency_key_returns_the_same_job(client: TestClient, dataset_id: str) -> None:
    headers = {"Idempotency-Key": "retry-me-1"}
    first = client.post("/v1/train", json=_train_body(dataset_id), headers=headers)
    second = client.post("/v1/train", json=_train_body(dataset_id), headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert client.get("/v1/jobs").json()["count"] == 1
    # Without a key, the same body is a new job.
    third = client.post("/v1/train", json=_train_body(dataset_id))
    assert third.json()["id"] != first.json()["id"]


def test_an_idempotency_key_reused_with_another_body_is_409(
    client: TestClient, dataset_id: str
) -> None:
    headers = {"Idempotency-Key": "retry-me-2"}
    first = client.post("/v1/train", json=_train_body(dataset_id), headers=headers)
    other = client.post("/v1/train", json=_train_body(dataset_id, n_clusters=5), headers=headers)
    body = assert_problem(other, status=409, slug="idempotency-key-reused")
    assert body["job_id"] == first.json()["id"]


def test_evaluate_checks_the_model_and_the_dataset(
    client: TestClient, dataset_id: str, served_version
) -> None:
    response = client.post(
        "/v1/evaluate", json={"model_ref": "scenes@production", "dataset_id": dataset_id}
    )
    assert response.status_code == 202, response.text
    assert response.json()["kind"] == "evaluate"
    missing_model = client.post(
        "/v1/evaluate", json={"model_ref": "scenes:v42", "dataset_id": dataset_id}
    )
    assert_problem(missing_model, status=404, slug="model-not-found")
    missing_data = client.post(
        "/v1/evaluate", json={"model_ref": "scenes", "dataset_id": "ds_ffffffffffff"}
    )
    assert_problem(missing_data, status=404, slug="dataset-not-found")


def test_jobs_are_listed_with_pagination_and_a_status_filter(
    client: TestClient, dataset_id: str
) -> None:
    ids = [client.post("/v1/train", json=_train_body(dataset_id)).json()["id"] for _ in range(3)]
    page = client.get("/v1/jobs", params={"limit": 2}).json()
    assert page["count"] == 3 and len(page["data"]) == 2
    rest = client.get("/v1/jobs", params={"limit": 2, "offset": 2}).json()
    assert {job["id"] for job in page["data"] + rest["data"]} == set(ids)
    assert client.delete(f"/v1/jobs/{ids[0]}").status_code == 202
    canceled = client.get("/v1/jobs", params={"status": "canceled"}).json()
    assert [job["id"] for job in canceled["data"]] == [ids[0]]
    queued = client.get("/v1/jobs", params={"status": "queued"}).json()
    assert queued["count"] == 2
    bad = client.get("/v1/jobs", params={"status": "sleeping"})
    assert_problem(bad, status=422, slug="validation-error")


def test_cancel_a_queued_job_then_again_is_409(client: TestClient, dataset_id: str) -> None:
    job_id = client.post("/v1/train", json=_train_body(dataset_id)).json()["id"]
    response = client.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 202
    assert response.json()["status"] == "canceled"
    again = client.delete(f"/v1/jobs/{job_id}")
    assert_problem(again, status=409, slug="job-not-cancellable")


def test_unknown_jobs_are_404(client: TestClient) -> None:
    assert_problem(client.get("/v1/jobs/nope"), status=404, slug="job-not-found")
    assert_problem(client.delete("/v1/jobs/nope"), status=404, slug="job-not-found")


def test_redis_down_is_503_with_retry_after_and_clustering_still_works(
    tmp_path: Path, served_version, redis_db
) -> None:
    settings = make_settings(tmp_path, redis_url=UNUSED_REDIS_URL, redis_retry_after_seconds=7)
    with TestClient(create_app(settings)) as client:
        for method, path, body in [
            ("GET", "/v1/jobs", None),
            ("GET", "/v1/jobs/some-id", None),
            ("DELETE", "/v1/jobs/some-id", None),
        ]:
            response = client.request(method, path, json=body)
            assert_problem(response, status=503, slug="redis-unavailable")
            assert response.headers["retry-after"] == "7"
        clustered = client.post("/v1/cluster", files={"file": ("a.wav", noise_wav(0.5))})
        assert clustered.status_code == 200, clustered.text
        readiness = client.get("/readyz")
        body = assert_problem(readiness, status=503, slug="not-ready")
        assert body["checks"]["redis"]["ok"] is False
        assert body["checks"]["model"]["ok"] is True
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_train_with_redis_down_is_503(tmp_path: Path, served_version, redis_db) -> None:
    settings = make_settings(tmp_path, redis_url=UNUSED_REDIS_URL)
    source = tmp_path / "recordings" / "tone"
    source.mkdir(parents=True)
    (source / "a.wav").write_bytes(tone_wav(0.5))
    dataset = DatasetStore(settings.datasets_path).register_folder(source.parent).id
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/train", json=_train_body(dataset))
        assert_problem(response, status=503, slug="redis-unavailable")
        assert response.headers["retry-after"] == "5"


def test_idempotency_keys_are_scoped_per_api_key(
    tmp_path: Path, redis_db: redis.Redis, served_version
) -> None:
    settings = make_settings(tmp_path, api_keys="alice-key,bob-key")
    source = tmp_path / "recordings" / "tone"
    source.mkdir(parents=True)
    (source / "a.wav").write_bytes(tone_wav(0.5))
    dataset = DatasetStore(settings.datasets_path).register_folder(source.parent).id
    with TestClient(create_app(settings)) as client:
        jobs = [
            client.post(
                "/v1/train",
                json=_train_body(dataset),
                headers={"X-API-Key": key, "Idempotency-Key": "same-key"},
            ).json()["id"]
            for key in ("alice-key", "bob-key", "alice-key")
        ]
    assert jobs[0] == jobs[2] != jobs[1]


_REFERENCES = [
    "scenes",
    "scenes:v1",
    "scenes:v42",
    "scenes@production",
    "a.b_c-d@x1_y-z",
    "x:v00",
    "x:v0",
    "x:v01",
    "x:v1234567890",
    "x@1st",
    "x@Prod",
    "x@a.b",
    "Scenes",
    ".hidden",
    "x:1",
    "x@",
    "x:v1@prod",
    "a" * 65,
]


@pytest.mark.parametrize("reference", _REFERENCES)
def test_the_model_ref_pattern_accepts_exactly_what_the_store_accepts(
    client: TestClient, reference: str
) -> None:
    document = client.get("/openapi.json").json()
    pattern = document["components"]["schemas"]["EvaluateRequest"]["properties"]["model_ref"][
        "pattern"
    ]
    try:
        parse_ref(reference)
        store_accepts = True
    except InvalidReference:
        store_accepts = False
    assert (re.search(pattern, reference) is not None) == store_accepts


def test_a_model_ref_the_store_would_refuse_is_a_schema_validation_error(
    client: TestClient, dataset_id: str
) -> None:
    response = client.post("/v1/evaluate", json={"model_ref": "x:v00", "dataset_id": dataset_id})
    body = assert_problem(response, status=422, slug="validation-error")
    assert body["errors"][0]["loc"] == ["body", "model_ref"]
    assert body["errors"][0]["type"] == "string_pattern_mismatch"


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
    body = _train_body(
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
    from uvac.training import train_model
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
    response = client.post("/v1/train", json=_train_body(dataset_id, **overrides))
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
    body = _train_body(dataset_id, model_type=model_type, model_hyperparameters=hyperparameters)
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
    body = _train_body(dataset_id, model_type=model_type, model_hyperparameters=options)
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
