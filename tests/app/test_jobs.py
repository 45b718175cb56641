"""Job routes against the real Redis (database 12): submit, idempotency, list, get, cancel,
and 503 + Retry-After when Redis is down. No worker runs here: jobs stay queued."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from app.main import create_app
from dataset_store import DatasetStore
from model_store import InvalidReference, ModelStore
from model_store.refs import parse_ref
from service_config import Settings
from tests.app.conftest import UNUSED_REDIS_URL, make_settings, publish_tiny_model
from tests.app.helpers import (
    LONG_CLIP_SECONDS,
    assert_problem,
    noise_wav,
    tone_wav,
    train_body,
    two_clip_dataset,
)


@pytest.fixture
def dataset_id(settings: Settings, tmp_path: Path) -> str:
    return two_clip_dataset(settings.datasets_path, tmp_path, seconds=LONG_CLIP_SECONDS)


def test_train_answers_202_with_the_job_location(client: TestClient, dataset_id: str) -> None:
    response = client.post("/v1/train", json=train_body(dataset_id, epochs=3, seed=1))
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
    response = client.post("/train", json=train_body(dataset_id))
    assert response.status_code == 202
    assert response.headers["location"].startswith("/v1/jobs/")


def test_train_on_an_unknown_dataset_is_404(client: TestClient, redis_db: redis.Redis) -> None:
    response = client.post("/v1/train", json=train_body("ds_000000000000"))
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
    response = client.post("/v1/train", json=train_body(dataset_id, **overrides))
    body = assert_problem(response, status=422, slug="validation-error")
    assert any(error["loc"][-1] == field for error in body["errors"]), body["errors"]


def test_an_idempotency_key_returns_the_same_job(client: TestClient, dataset_id: str) -> None:
    headers = {"Idempotency-Key": "retry-me-1"}
    first = client.post("/v1/train", json=train_body(dataset_id), headers=headers)
    second = client.post("/v1/train", json=train_body(dataset_id), headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert client.get("/v1/jobs").json()["count"] == 1
    # Without a key, the same body is a new job.
    third = client.post("/v1/train", json=train_body(dataset_id))
    assert third.json()["id"] != first.json()["id"]


def test_an_idempotency_key_reused_with_another_body_is_409(
    client: TestClient, dataset_id: str
) -> None:
    headers = {"Idempotency-Key": "retry-me-2"}
    first = client.post("/v1/train", json=train_body(dataset_id), headers=headers)
    other = client.post("/v1/train", json=train_body(dataset_id, n_clusters=5), headers=headers)
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


def test_an_evaluation_split_that_does_not_exist_is_a_422_at_submission(
    client: TestClient, settings: Settings, dataset_id: str, store: ModelStore, served_version
) -> None:
    manifest = DatasetStore(settings.datasets_path).get(dataset_id)
    held = manifest.files[0].path
    own = publish_tiny_model(store, seed=5, alias=None, metadata={
        "dataset": {"id": dataset_id, "digest": manifest.digest},
        "held_out": {"share": 0.2, "files": [held]},
    })  # fmt: skip
    # The model's own data set: held-out by default, or all of it; the split travels as asked.
    default = client.post("/v1/evaluate", json={"model_ref": own.ref, "dataset_id": dataset_id})
    assert default.status_code == 202, default.text
    assert "split" not in default.json()["params"]
    explicit = {"model_ref": own.ref, "dataset_id": dataset_id, "split": "all"}
    assert client.post("/v1/evaluate", json=explicit).json()["params"]["split"] == "all"
    # served_version was trained on another data set: it has no held-out part here.
    foreign = {"model_ref": served_version.ref, "dataset_id": dataset_id, "split": "held-out"}
    body = assert_problem(client.post("/v1/evaluate", json=foreign), status=422,
                          slug="invalid-split")  # fmt: skip
    assert 'split "all"' in body["detail"]
    unknown = {**explicit, "split": "train"}
    assert_problem(client.post("/v1/evaluate", json=unknown), status=422, slug="validation-error")


def test_jobs_are_listed_with_pagination_and_a_status_filter(
    client: TestClient, dataset_id: str
) -> None:
    ids = [client.post("/v1/train", json=train_body(dataset_id)).json()["id"] for _ in range(3)]
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
    # An offset past what Redis ranges take (found by schemathesis) is refused, not a 500.
    for path in ("/v1/jobs", "/v1/datasets", "/v1/models/scenes/versions"):
        huge = client.get(path, params={"offset": 357989040972531566116864})
        assert_problem(huge, status=422, slug="validation-error")
    assert client.get("/v1/jobs", params={"offset": 2**31 - 1}).json()["data"] == []


def test_cancel_a_queued_job_then_again_is_409(client: TestClient, dataset_id: str) -> None:
    job_id = client.post("/v1/train", json=train_body(dataset_id)).json()["id"]
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
    (source / "a.wav").write_bytes(tone_wav(LONG_CLIP_SECONDS))  # windows for 4 clusters
    dataset = DatasetStore(settings.datasets_path).register_folder(source.parent).id
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/train", json=train_body(dataset))
        assert_problem(response, status=503, slug="redis-unavailable")
        assert response.headers["retry-after"] == "5"


def test_idempotency_keys_are_scoped_per_api_key(
    tmp_path: Path, redis_db: redis.Redis, served_version
) -> None:
    settings = make_settings(tmp_path, api_keys="alice-key,bob-key")
    source = tmp_path / "recordings" / "tone"
    source.mkdir(parents=True)
    (source / "a.wav").write_bytes(tone_wav(LONG_CLIP_SECONDS))  # windows for 4 clusters
    dataset = DatasetStore(settings.datasets_path).register_folder(source.parent).id
    with TestClient(create_app(settings)) as client:
        jobs = [
            client.post(
                "/v1/train",
                json=train_body(dataset),
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


def test_train_while_another_deployments_workers_use_the_database_is_503(
    client: TestClient, dataset_id: str, redis_db: redis.Redis
) -> None:
    from rq import Worker

    from worker.deployment import worker_name

    stranger = Worker(["training"], name=worker_name("0ther0deploy"), connection=redis_db)
    stranger.register_birth()
    try:
        response = client.post("/v1/train", json=train_body(dataset_id, epochs=3, seed=1))
    finally:
        stranger.register_death()
    body = assert_problem(response, status=503, slug="deployment-conflict")
    assert "its own Redis database" in body["detail"]


def test_a_data_set_used_by_a_queued_job_cannot_be_deleted(
    client: TestClient, dataset_id: str
) -> None:
    job_id = client.post("/v1/train", json=train_body(dataset_id)).json()["id"]
    refused = client.delete(f"/v1/datasets/{dataset_id}")
    problem = assert_problem(refused, status=409, slug="dataset-in-use")
    assert job_id in problem["detail"]
    assert client.get(f"/v1/datasets/{dataset_id}").status_code == 200
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 202  # cancelled: ended
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204


def test_a_failed_job_names_no_server_path(
    client: TestClient, dataset_id: str, redis_db: redis.Redis
) -> None:
    from rq.job import Job
    from rq.serializers import JSONSerializer

    job_id = client.post("/v1/train", json=train_body(dataset_id)).json()["id"]
    job = Job.fetch(job_id, connection=redis_db, serializer=JSONSerializer)
    job.meta["error"] = {
        "type": "FileNotFoundError",
        "message": "[Errno 2] No such file or directory: "
        "'/srv/uvac/var/datasets/ds_0123456789ab/files/a.wav' (from /opt/app/worker/x.py)",
    }
    job.save_meta()
    job.set_status("failed")
    error = client.get(f"/v1/jobs/{job_id}").json()["error"]
    assert "/srv" not in error["message"]
    assert "/opt" not in error["message"]
    assert error["message"].count("<server path>") == 2
