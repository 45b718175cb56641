"""What `create_app` mounts: the versioned routes, the two legacy ones, HEAD beside GET."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.routes import LEGACY_ROUTES
from tests.app.helpers import PATH_VALUES, noise_wav


def _operations(client: TestClient) -> list[tuple[str, str]]:
    """(method, concrete path) of every documented operation."""
    document: dict[str, Any] = client.get("/openapi.json").json()
    return [
        (method.upper(), re.sub(r"\{(\w+)\}", lambda match: PATH_VALUES[match.group(1)], path))
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    ]


def test_the_legacy_routes_are_the_fitting_backends_two() -> None:
    assert {("POST", "/cluster"), ("POST", "/train")} == LEGACY_ROUTES


def test_only_the_legacy_routes_answer_without_the_prefix(client: TestClient) -> None:
    versioned = [(m, p) for m, p in _operations(client) if p.startswith("/v1/")]
    assert len(versioned) >= 10
    for method, path in versioned:
        unprefixed = path.removeprefix("/v1")
        response = client.request(method, unprefixed)
        if (method, unprefixed) in LEGACY_ROUTES:
            assert response.status_code != 404, (method, unprefixed)
        else:
            assert response.status_code in (404, 405), (method, unprefixed, response.text)
    assert client.post("/cluster", files={"file": ("a.wav", noise_wav(0.5))}).status_code == 200


def test_every_get_route_answers_head_like_get(client: TestClient) -> None:
    paths = sorted({path for method, path in _operations(client) if method == "GET"})
    paths += ["/openapi.json", "/docs"]
    assert "/livez" in paths and "/v1/models" in paths
    for path in paths:
        get = client.get(path)
        head = client.head(path)
        assert head.status_code == get.status_code, (path, head.text)
        assert head.headers.get("content-type") == get.headers.get("content-type"), path
        assert head.content == b"", path


def test_head_where_no_get_answers_is_a_405_naming_the_methods(client: TestClient) -> None:
    response = client.head("/v1/cluster")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize("path", ["/livez", "/v1/models"])
def test_head_is_not_in_the_openapi_document(client: TestClient, path: str) -> None:
    document = client.get("/openapi.json").json()
    assert set(document["paths"][path]) == {"get"}
