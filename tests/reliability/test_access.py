"""Access from outside: CORS closed by default, API keys on every business operation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from model_store import ModelStore
from tests.app.conftest import make_settings, publish_tiny_model
from tests.app.helpers import PATH_VALUES, noise_wav
from tests.redis_address import redis_url_for_tests

REDIS_URL = redis_url_for_tests(14)
# Open without a key: the operations routes and the index that points at the docs (`GET /`).
OPERATIONS_PATHS = {"/livez", "/readyz", "/healthz", "/metrics", "/"}


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def _client(tmp_path: Path, **overrides: object) -> TestClient:
    torch.set_num_threads(1)
    publish_tiny_model(ModelStore(tmp_path / "models"))
    return TestClient(create_app(make_settings(tmp_path, redis_url=REDIS_URL, **overrides)))


def _preflight(client: TestClient, origin: str) -> dict[str, str]:
    response = client.options(
        "/v1/cluster",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-API-Key",
        },
    )
    return {key.lower(): value for key, value in response.headers.items()}


def test_cors_is_closed_by_default(tmp_path: Path, redis_db: redis.Redis) -> None:
    with _client(tmp_path) as client:
        headers = _preflight(client, "https://evil.example")
        assert "access-control-allow-origin" not in headers
        simple = client.post(
            "/v1/cluster",
            files={"file": ("a.wav", noise_wav(0.5))},
            headers={"Origin": "https://evil.example"},
        )
        assert simple.status_code == 200
        assert "access-control-allow-origin" not in {k.lower() for k in simple.headers}


def test_cors_opens_only_to_configured_origins(tmp_path: Path, redis_db: redis.Redis) -> None:
    with _client(tmp_path, cors_origins="https://fitting.example") as client:
        allowed = _preflight(client, "https://fitting.example")
        assert allowed["access-control-allow-origin"] == "https://fitting.example"
        assert "access-control-allow-origin" not in _preflight(client, "https://evil.example")


def _business_operations(client: TestClient) -> list[tuple[str, str]]:
    document = client.get("/openapi.json").json()
    operations = []
    for template, methods in document["paths"].items():
        if template in OPERATIONS_PATHS:
            continue
        path = re.sub(r"\{(\w+)\}", lambda match: PATH_VALUES[match.group(1)], template)
        operations += [(method.upper(), path) for method in methods if method != "parameters"]
    return operations


def test_every_business_operation_requires_a_key(tmp_path: Path, redis_db: redis.Redis) -> None:
    with _client(tmp_path, api_keys="k1") as client:
        operations = _business_operations(client)
        assert len(operations) >= 10  # the document really lists the API
        operations += [("POST", "/cluster"), ("POST", "/train")]  # the legacy mount
        for method, path in operations:
            anonymous = client.request(method, path)
            assert anonymous.status_code == 401, (method, path, anonymous.text)
            wrong = client.request(method, path, headers={"X-API-Key": "k2"})
            assert wrong.status_code == 403, (method, path, wrong.text)
            keyed = client.request(method, path, headers={"X-API-Key": "k1"})
            assert keyed.status_code not in (401, 403), (method, path, keyed.text)
