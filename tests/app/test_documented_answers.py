"""Every answer a route gives is in its OpenAPI operation: a request of each hostile class is
sent to every route that takes it, and the status that comes back must be one the operation
documents, as a problem document."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service_config import Settings
from tests.app.helpers import LONG_CLIP_SECONDS, assert_problem, train_body, two_clip_dataset

# A value for each path parameter that the routes accept as well formed.
_PATH_VALUES = {
    "name": "scenes",
    "version": "1",
    "alias": "production",
    "cluster": "0",
    "job_id": "0123456789abcdef",
    "dataset_id": "ds_0123456789ab",
    "file_name": "x.json",
    "recording": "0",
}
_JSON = {"content-type": "application/json"}
# Deeper than the JSON parser's recursion allows, and an integer longer than int() converts:
# both well under the body cap.
DEEP = b'{"dataset_id": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
LONG_NUMBER = b'{"dataset_id": "ds_0123456789ab", "n_clusters": 4, "seed": ' + b"7" * 5000 + b"}"


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for template, item in document["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda match: _PATH_VALUES[match.group(1)], template)
        for method, operation in item.items():
            yield method.upper(), path, operation


def _json_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = [
        (method, path, operation)
        for method, path, operation in _operations(document)
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    assert len(found) >= 7  # train, evaluate, distill, prepare, alias, cluster name, novelty
    return found


def test_a_body_over_the_cap_is_a_documented_413(
    client: TestClient, document: dict[str, Any], settings: Settings
) -> None:
    oversized = b'{"x": "' + b"x" * settings.max_json_body_bytes + b'"}'
    for method, path, operation in _json_operations(document):
        response = client.request(method, path, content=oversized, headers=_JSON)
        assert_problem(response, status=413, slug="body-too-large")
        assert "413" in operation["responses"], (method, path)


@pytest.mark.parametrize("body", [DEEP, LONG_NUMBER], ids=["deep-nesting", "long-number"])
def test_deep_nesting_and_long_numbers_are_documented_422s(
    client: TestClient, document: dict[str, Any], body: bytes
) -> None:
    for method, path, operation in _json_operations(document):
        response = client.request(method, path, content=body, headers=_JSON)
        problem = assert_problem(response, status=422, slug="validation-error")
        (error,) = problem["errors"]
        assert error["type"] == "json_invalid" and error["loc"] == ["body"]
        assert "422" in operation["responses"], (method, path)


def test_a_malformed_idempotency_key_is_a_documented_400(
    client: TestClient, document: dict[str, Any], settings: Settings, tmp_path: Path
) -> None:
    dataset_id = two_clip_dataset(settings.datasets_path, tmp_path, seconds=LONG_CLIP_SECONDS)
    response = client.post(
        "/v1/train", json=train_body(dataset_id), headers={"Idempotency-Key": "k" * 1000}
    )
    assert_problem(response, status=400, slug="bad-idempotency-key")
    keyed = [
        (method, path, operation)
        for method, path, operation in _operations(document)
        if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
    ]
    assert {path for _, path, _ in keyed} >= {"/v1/train", "/v1/evaluate", "/v1/distill"}
    for method, path, operation in keyed:
        assert "400" in operation["responses"], (method, path)


def test_file_downloads_document_their_range_answers(document: dict[str, Any]) -> None:
    """Every route answering with a file serves byte ranges: 206, and 400 or 416 as problems
    for a range it cannot serve (tests/app/test_browser.py sends them)."""
    downloads = [
        "/v1/models/{name}/versions/{version}/browser/audio/{recording}",
        "/v1/models/{name}/versions/{version}/browser/data",
        "/v1/models/{name}/versions/{version}/report/{file_name}",
        "/v1/models/{name}/versions/{version}/export/{file_name}",
    ]
    for path in downloads:
        responses = document["paths"][path]["get"]["responses"]
        assert {"206", "400", "416"} <= set(responses), path
        assert "application/problem+json" in responses["416"]["content"]


def test_routes_on_redis_or_a_store_document_their_503(document: dict[str, Any]) -> None:
    """Redis down or an S3 store out of reach is a 503 on every route that uses them."""
    for path, method in [
        ("/v1/models", "get"),
        ("/v1/models/{name}/versions/{version}", "get"),
        ("/v1/models/{name}/versions/{version}/report/{file_name}", "get"),
        ("/v1/datasets", "get"),
        ("/v1/datasets", "post"),
        ("/v1/datasets/{dataset_id}", "get"),
        ("/v1/jobs", "get"),
    ]:
        responses = document["paths"][path][method]["responses"]
        assert "application/problem+json" in responses["503"]["content"], (method, path)
    assert "503" not in document["paths"]["/livez"]["get"]["responses"]
