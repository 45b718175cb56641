"""API keys: 401 without, 403 with a wrong one; operations routes stay open."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import make_settings
from tests.app.helpers import LONG_CLIP_SECONDS, assert_problem, noise_wav, two_clip_dataset


@pytest.fixture
def secured(tmp_path, redis_db, served_version) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, api_keys="key-one, key-two")
    with TestClient(create_app(settings)) as client:
        yield client


def _cluster(client: TestClient, headers: dict[str, str] | None = None):
    return client.post(
        "/v1/cluster", files={"file": ("a.wav", noise_wav(0.5))}, headers=headers or {}
    )


def test_no_key_is_401(secured: TestClient) -> None:
    response = _cluster(secured)
    assert_problem(response, status=401, slug="unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_problem(secured.get("/v1/models"), status=401, slug="unauthenticated")
    assert_problem(secured.post("/train", json={}), status=401, slug="unauthenticated")


def test_a_wrong_key_is_403(secured: TestClient) -> None:
    assert_problem(_cluster(secured, {"X-API-Key": "nope"}), status=403, slug="forbidden")
    response = _cluster(secured, {"Authorization": "Bearer nope"})
    assert_problem(response, status=403, slug="forbidden")


@pytest.mark.parametrize(
    "headers",
    [{"X-API-Key": "key-one"}, {"X-API-Key": "key-two"}, {"Authorization": "Bearer key-two"}],
)
def test_a_configured_key_is_accepted(secured: TestClient, headers: dict[str, str]) -> None:
    assert _cluster(secured, headers).status_code == 200


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/healthz", "/metrics", "/openapi.json"])
def test_operations_routes_stay_open(secured: TestClient, path: str) -> None:
    assert secured.get(path).status_code == 200


def test_docs_stay_open(secured: TestClient) -> None:
    assert secured.get("/docs").status_code == 200


def test_openapi_declares_both_schemes(secured: TestClient) -> None:
    schemes = secured.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"
    assert schemes["HTTPBearer"]["scheme"] == "bearer"


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type"),
    [
        ("POST", "/v1/train", b'{"dataset_id": ', "application/json"),
        ("POST", "/v1/evaluate", b"\xff\xfe not even text", "application/json"),
        ("PUT", "/v1/models/scenes/aliases/production", b"[1, 2", "application/json"),
        ("POST", "/v1/cluster", b"--x\r\nbroken", "multipart/form-data; boundary=" + "b" * 300),
        ("POST", "/v1/datasets", b"not multipart", "text/plain"),
        ("POST", "/v1/train", b"{}" * 600_000, "application/json"),
    ],
)
def test_the_key_is_checked_before_the_body_is_read(
    secured: TestClient, method: str, path: str, body: bytes, content_type: str
) -> None:
    """A caller without a key learns nothing from the body's parse errors."""
    response = secured.request(method, path, content=body, headers={"content-type": content_type})
    assert_problem(response, status=401, slug="unauthenticated")
    wrong = secured.request(
        method, path, content=body, headers={"content-type": content_type, "X-API-Key": "no"}
    )
    assert_problem(wrong, status=403, slug="forbidden")


def test_one_tenant_per_deployment_keys_share_jobs_but_not_idempotency(
    secured: TestClient, settings_with_keys_dataset: str
) -> None:
    """Every key of a deployment sees its data sets, models and jobs (app/auth.py); keys
    tell callers apart only for Idempotency-Key, so one cannot replay another's submission."""
    body = {"dataset_id": settings_with_keys_dataset, "n_clusters": 2, "epochs": 1}
    one = {"X-API-Key": "key-one", "Idempotency-Key": "same"}
    two = {"X-API-Key": "key-two", "Idempotency-Key": "same"}
    first = secured.post("/v1/train", json=body, headers=one)
    second = secured.post("/v1/train", json=body, headers=two)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] != second.json()["id"]
    assert secured.post("/v1/train", json=body, headers=one).json()["id"] == first.json()["id"]

    job = secured.get(first.headers["location"], headers={"X-API-Key": "key-two"})
    assert job.status_code == 200
    listed = secured.get("/v1/jobs", headers={"X-API-Key": "key-two"}).json()
    assert {first.json()["id"], second.json()["id"]} <= {item["id"] for item in listed["data"]}
    cancelled = secured.delete(first.headers["location"], headers={"X-API-Key": "key-two"})
    assert cancelled.status_code == 202


@pytest.fixture
def settings_with_keys_dataset(tmp_path) -> str:
    return two_clip_dataset(tmp_path / "datasets", tmp_path, seconds=LONG_CLIP_SECONDS)
