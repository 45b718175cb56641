"""problem+json for every kind of error, and request ids on every response."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.main import create_app
from app.problems import ApiProblem, problem_from_exception
from dataset_store.errors import ArchiveRejected, ArchiveTooLarge
from model_store import Corrupted, NotFound
from tests.app.helpers import assert_problem
from uvac.errors import AudioTooLongError, NotAudioError
from worker.errors import JobNotFound


def test_domain_errors_map_by_their_class_attributes() -> None:
    cases = [
        (NotAudioError("x"), 415, "not-audio"),
        (AudioTooLongError("x"), 413, "audio-too-long"),
        (NotFound("x"), 404, "model-not-found"),
        (Corrupted("x", ref="a:v1"), 422, "model-corrupted"),
        (JobNotFound("x"), 404, "job-not-found"),
        (ArchiveTooLarge("x"), 413, "archive-too-large"),
        (ApiProblem(status=503, slug="no-model", detail="x"), 503, "no-model"),
    ]
    for error, status, slug in cases:
        problem = problem_from_exception(error)
        assert (problem.status, problem.slug, problem.detail) == (status, slug, "x")
        assert problem.title


def test_an_unexpected_exception_is_a_500_problem_that_leaks_nothing(settings) -> None:
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "trace-me-123"})
    body = assert_problem(response, status=500, slug="internal")
    assert "secret" not in response.text
    assert body["request_id"] == "trace-me-123"


def test_unknown_routes_and_methods_are_problems(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), status=404, slug="not-found")
    assert_problem(client.get("/v1/cluster"), status=405, slug="method-not-allowed")


def test_malformed_json_is_a_validation_problem(client: TestClient) -> None:
    response = client.post(
        "/v1/train", content=b"{not json", headers={"content-type": "application/json"}
    )
    body = assert_problem(response, status=422, slug="validation-error")
    assert body["errors"]


_PATH_VALUES = {"{name}": "scenes", "{alias}": "production"}


def _json_body_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, concrete path, operation) for every operation that takes a JSON body."""
    found = []
    for template, item in document["paths"].items():
        path = template
        for placeholder, value in _PATH_VALUES.items():
            path = path.replace(placeholder, value)
        for method, operation in item.items():
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                found.append((method.upper(), path, operation))
    return found


@pytest.mark.parametrize("payload", [b"\x00\xff\x19", b"\xff\xfe{", b"{not json", b'{"a": 1'])
def test_malformed_json_is_the_same_documented_problem_on_every_json_route(
    client: TestClient, payload: bytes
) -> None:
    operations = _json_body_operations(client.get("/openapi.json").json())
    assert len(operations) >= 3  # train, evaluate, alias
    for method, path, operation in operations:
        response = client.request(
            method, path, content=payload, headers={"content-type": "application/json"}
        )
        body = assert_problem(response, status=422, slug="validation-error", path=path)
        assert body["detail"].startswith("The request body could not be parsed as JSON"), body
        assert body["errors"][0]["loc"] == ["body"]
        assert body["errors"][0]["type"] == "json_invalid"
        documented = operation["responses"]["422"]["content"]
        assert "application/problem+json" in documented


def test_request_ids_are_honoured_or_generated(client: TestClient) -> None:
    assert client.get("/livez", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == (
        "abc-123"
    )
    generated = client.get("/livez", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"
    assert len(generated.headers["x-request-id"]) == 32
    first = client.get("/livez").headers["x-request-id"]
    assert first != client.get("/livez").headers["x-request-id"]


def test_create_app_does_not_share_state_between_apps(settings) -> None:
    first, second = create_app(settings), create_app(settings)
    assert isinstance(first, FastAPI) and first is not second
    with TestClient(first) as a, TestClient(second) as b:
        a.get("/livez")
        assert 'route="/livez"' in a.get("/metrics").text
        assert 'route="/livez"' not in b.get("/metrics").text


def test_json_bodies_over_the_cap_are_413_problems(tmp_path, redis_db) -> None:
    from tests.app.conftest import make_settings

    settings = make_settings(tmp_path, max_json_body_bytes=1000)
    oversized = b'{"dataset_id": "' + b"x" * 5000 + b'"}'

    def chunks():
        for start in range(0, len(oversized), 500):
            yield oversized[start : start + 500]

    with TestClient(create_app(settings)) as client:
        declared = client.post(
            "/v1/train", content=oversized, headers={"content-type": "application/json"}
        )
        body = assert_problem(declared, status=413, slug="body-too-large", path="/v1/train")
        assert "1000" in body["detail"]
        streamed = client.post(
            "/train", content=chunks(), headers={"content-type": "application/json"}
        )
        assert_problem(streamed, status=413, slug="body-too-large")
        # Small bodies pass the cap (and fail validation on their merits).
        small = client.post("/v1/train", json={"dataset_id": "x"})
        assert_problem(small, status=422, slug="validation-error")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/datasets/ds_1", {"GET", "HEAD", "DELETE"}),
        ("PUT", "/v1/datasets/ds_1", {"GET", "HEAD", "DELETE"}),
        ("OPTIONS", "/v1/jobs/some-job", {"GET", "HEAD", "DELETE"}),
        ("PATCH", "/v1/jobs/some-job", {"GET", "HEAD", "DELETE"}),
        ("GET", "/v1/cluster", {"POST"}),
        ("GET", "/cluster", {"POST"}),  # the legacy route too
        ("DELETE", "/v1/datasets", {"GET", "HEAD", "POST"}),
    ],
)
def test_a_405_allows_every_method_of_the_path(
    client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path)
    body = assert_problem(response, status=405, slug="method-not-allowed", path=path)
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    assert method in body["detail"]
    for other in allowed:  # what Allow names does answer (not with a 405)
        if other in ("GET", "DELETE"):
            assert client.request(other, path).status_code != 405


def test_no_problem_document_shows_a_server_path(settings, tmp_path) -> None:
    """Whatever text an error carries, the server's folders never reach the caller."""
    app = create_app(settings)
    staging = settings.datasets_path.resolve() / ".staging" / "0123" / "files" / "a.wav"
    leaky = f"[Errno 36] File name too long: '{staging}'"

    @app.get("/leak")
    def leak() -> None:
        raise ArchiveRejected(leaky)

    @app.get("/leak-extension")
    def leak_extension() -> None:
        raise ApiProblem(
            status=409, slug="conflict", detail="x", extensions={"where": [str(tmp_path)]}
        )

    with TestClient(app) as client:
        detail = assert_problem(client.get("/leak"), status=400, slug="archive-rejected")
        extension = client.get("/leak-extension").json()
    assert str(tmp_path) not in repr(detail) + repr(extension)
    assert detail["detail"] == "[Errno 36] File name too long: '<server path>'"
    assert extension["where"] == ["<server path>"]


def test_every_absolute_path_is_blanked_alike(settings) -> None:
    """A name of one of the service's folders and any other absolute path come back the same,
    so the answers do not tell which folders exist here."""
    app = create_app(settings)

    @app.get("/echo")
    def echo(name: str) -> None:
        raise ArchiveRejected(f"Entry {name!r} has an absolute path.")

    own = [settings.datasets_path.resolve(), settings.model_store_path.resolve()]
    others = ["/etc/passwd", "/no/such/folder/a.wav", "/srv/uvac/datasets"]
    with TestClient(app) as client:
        answers = {
            str(name): client.get("/echo", params={"name": str(name)}).json()
            for name in [*own, *others]
        }
    details = {answer["detail"] for answer in answers.values()}
    assert details == {"Entry '<server path>' has an absolute path."}
    assert all(answer["instance"] == "/echo" for answer in answers.values())


def test_each_validation_problem_is_one_plain_sentence(client: TestClient) -> None:
    response = client.post(
        "/v1/train",
        json={"dataset_id": "ds_0123456789ab", "n_clusters": {"min": 9, "max": 3}, "epochs": 0},
    )
    body = assert_problem(response, status=422, slug="validation-error")
    assert "Value error" not in response.text
    assert "range: " not in body["detail"]  # no stacked prefixes
    assert body["detail"].startswith("n_clusters: the K range 9..3 is empty")
    assert body["detail"].count(". ") == 1 and body["detail"].endswith(".")  # two sentences
    locations = [error["loc"] for error in body["errors"]]
    assert locations == [["body", "n_clusters"], ["body", "epochs"]]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_json_route_says_to_send_json(client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/v1/train", content=b'{"dataset_id": "ds_1"}', headers=headers)
    body = assert_problem(response, status=422, slug="validation-error")
    assert "Content-Type: application/json" in body["detail"]
