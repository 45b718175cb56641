"""The OpenAPI document a client generator will read."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app


@pytest.fixture
def document(settings) -> dict[str, Any]:
    with TestClient(create_app(settings)) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[-1] in schemas, ref


def test_only_the_versioned_routes_are_documented(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for expected in (
        "/v1/cluster",
        "/v1/cluster/batch",
        "/v1/train",
        "/v1/evaluate",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/datasets",
        "/v1/datasets/{dataset_id}",
        "/v1/models",
        "/v1/models/{name}/versions",
        "/v1/models/{name}/versions/{version}",
        "/v1/models/{name}/versions/{version}/report",
        "/v1/models/{name}/aliases/{alias}",
        "/livez",
        "/readyz",
        "/healthz",
        "/metrics",
    ):
        assert expected in paths, expected
    assert "/cluster" not in paths and "/train" not in paths


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [
        operation["operationId"]
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    ]
    assert len(ids) == len(set(ids))


def test_errors_are_documented_as_problems(document: dict[str, Any]) -> None:
    assert {"type", "title", "status", "detail"} <= set(
        document["components"]["schemas"]["Problem"]["properties"]
    )
    assert "HTTPValidationError" not in document["components"]["schemas"]
    cluster = document["paths"]["/v1/cluster"]["post"]
    for status in ("413", "415", "422", "503"):
        content = cluster["responses"][status]["content"]
        assert content == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
    train = document["paths"]["/v1/train"]["post"]
    assert "202" in train["responses"] and "404" in train["responses"]
    assert train["responses"]["422"]["content"]["application/problem+json"]


def test_uploads_are_documented_as_multipart(document: dict[str, Any]) -> None:
    body = document["paths"]["/v1/cluster"]["post"]["requestBody"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["file"]["format"] == "binary"
    batch = document["paths"]["/v1/cluster/batch"]["post"]["requestBody"]
    files = batch["content"]["multipart/form-data"]["schema"]["properties"]["files"]
    assert files["type"] == "array"
    assert files["minItems"] == 1  # zero file parts is a 422


def test_schemas_carry_examples(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("ClusterResult", "TrainRequest", "JobPublic", "DatasetPublic", "Problem"):
        assert schemas[name].get("examples"), name
