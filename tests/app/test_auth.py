"""API keys: 401 without, 403 with a wrong one; operations routes stay open."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import make_settings
from tests.app.helpers import assert_problem, noise_wav


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
