"""A JSON body of many unknown keys or many bad values is refused cheaply, with a short answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient

from app.problems import MAX_REPORTED_ERRORS, problem_from_exception
from app.schemas.closed import MAX_UNKNOWN_KEYS
from tests.app.helpers import assert_problem

WIDE = 75_000  # under the 1 MB JSON cap


def wide(base: dict[str, Any]) -> bytes:
    body = {**base, **{f"k{i}": 1 for i in range(WIDE)}}
    return json.dumps(body, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("method", "path", "base"),
    [
        ("POST", "/v1/train", {"dataset_id": "ds_0123456789ab"}),
        ("POST", "/train", {"dataset_id": "ds_0123456789ab"}),
        ("POST", "/v1/distill", {"teacher_ref": "scenes", "dataset_id": "ds_0123456789ab"}),
        ("PUT", "/v1/models/scenes/versions/1/clusters/0", {"name": "Rain"}),
        ("POST", "/v1/evaluate", {"dataset_id": "ds_0123456789ab", "model_ref": "scenes:v1"}),
    ],
)
def test_many_unknown_keys_are_one_error(
    client: TestClient, method: str, path: str, base: dict[str, Any]
) -> None:
    body = wide(base)
    assert len(body) < 1024 * 1024
    response = client.request(
        method, path, content=body, headers={"Content-Type": "application/json"}
    )
    problem = assert_problem(response, status=422, slug="validation-error")
    assert len(response.content) < 4_000
    (error,) = problem["errors"]
    assert error["type"] == "extra_forbidden"
    assert f"{WIDE} unknown keys" in error["message"]


def test_a_few_unknown_keys_are_each_named(client: TestClient) -> None:
    body = {"name": "Rain", **{f"k{i}": 1 for i in range(MAX_UNKNOWN_KEYS)}}
    response = client.put("/v1/models/scenes/versions/1/clusters/0", json=body)
    problem = assert_problem(response, status=422, slug="validation-error")
    assert sorted(e["loc"][-1] for e in problem["errors"]) == sorted(
        f"k{i}" for i in range(MAX_UNKNOWN_KEYS)
    )


def test_many_bad_values_are_reported_in_part_with_their_count() -> None:
    errors = [
        {"loc": ("body", "items", i), "msg": "Input should be a valid integer", "type": "int_type"}
        for i in range(200)
    ]
    problem = problem_from_exception(RequestValidationError(errors))
    assert problem.status == 422
    assert len(problem.extensions["errors"]) == MAX_REPORTED_ERRORS
    assert problem.extensions["errors_total"] == 200
    assert "And 195 more (errors lists the first 20)." in problem.detail
