"""Multipart framing on every upload route: whatever the framing, a 4xx problem, never a 5xx.

The fuzz family `multipart-framing` of `benchmarks/reliability.py` tries many more
combinations against a real server; these are the parser's own limits, met on each route.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.uploads import MAX_FIELDS
from benchmarks.reliability.hostile_inputs import file_part, multipart_body
from tests.app.helpers import assert_problem, tone_wav

UPLOAD_ROUTES = {"/v1/cluster": "file", "/v1/cluster/batch": "files", "/v1/datasets": "file"}


def _post(client: TestClient, path: str, body: bytes, content_type: str):
    return client.post(path, content=body, headers={"content-type": content_type})


@pytest.mark.parametrize("path", list(UPLOAD_ROUTES))
@pytest.mark.parametrize("length", [257, 300, 5000])
def test_a_boundary_over_the_parsers_limit_is_400(
    client: TestClient, path: str, length: int
) -> None:
    boundary = "b" * length
    body, content_type = multipart_body(
        [file_part(UPLOAD_ROUTES[path], "a.wav", tone_wav(0.2))], boundary=boundary
    )
    response = _post(client, path, body, content_type)
    body_json = assert_problem(response, status=400, slug="malformed-multipart", path=path)
    assert "oundary" in body_json["detail"]


def test_the_longest_boundary_the_parser_takes_still_works(client: TestClient) -> None:
    body, content_type = multipart_body(
        [file_part("file", "a.wav", tone_wav(0.2))], boundary="b" * 256
    )
    assert _post(client, "/v1/cluster", body, content_type).status_code == 200


@pytest.mark.parametrize("path", list(UPLOAD_ROUTES))
def test_too_many_parts_are_refused_while_reading(client: TestClient, path: str) -> None:
    # Same-named fields replace each other, so a count of fields alone would not stop them.
    parts = [({"Content-Disposition": 'form-data; name="note"'}, b"x")] * 5000
    body, content_type = multipart_body(parts, boundary="frame")
    response = _post(client, path, body, content_type)
    assert_problem(response, status=413, slug="too-many-parts", path=path)


def test_ordinary_form_fields_beside_the_file_are_fine(client: TestClient) -> None:
    fields = [({"Content-Disposition": f'form-data; name="f{i}"'}, b"x") for i in range(MAX_FIELDS)]
    body, content_type = multipart_body(
        [*fields, file_part("file", "a.wav", tone_wav(0.2))], boundary="frame"
    )
    assert _post(client, "/v1/cluster", body, content_type).status_code == 200


@pytest.mark.parametrize("path", list(UPLOAD_ROUTES))
@pytest.mark.parametrize(
    "extra_headers",
    [
        pytest.param({"X-Long": "v" * 10_000}, id="one-huge-header"),
        pytest.param({f"X-{i}": "v" for i in range(50)}, id="many-headers"),
    ],
)
def test_oversized_part_headers_are_400(
    client: TestClient, path: str, extra_headers: dict[str, str]
) -> None:
    part = file_part(UPLOAD_ROUTES[path], "a.wav", tone_wav(0.2), **extra_headers)
    body, content_type = multipart_body([part], boundary="frame")
    response = _post(client, path, body, content_type)
    assert_problem(response, status=400, slug="malformed-multipart", path=path)


@pytest.mark.parametrize("path", list(UPLOAD_ROUTES))
@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data; boundary=",
        'multipart/form-data; boundary=""',
        "multipart/form-data; boundary=\u00e9\u00e9",
        "multipart/form-data; boundary=a; boundary=b",
    ],
)
def test_odd_boundary_parameters_are_4xx(client: TestClient, path: str, content_type: str) -> None:
    body, _ = multipart_body([file_part(UPLOAD_ROUTES[path], "a.wav", b"x")], boundary="a")
    response = client.post(
        path, content=body, headers={"content-type": content_type.encode("latin-1")}
    )
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize("path", list(UPLOAD_ROUTES))
def test_a_body_without_its_closing_boundary_is_400(client: TestClient, path: str) -> None:
    body, content_type = multipart_body(
        [file_part(UPLOAD_ROUTES[path], "a.wav", tone_wav(0.2))], boundary="frame"
    )
    cut = body[: body.rindex(b"--frame--")]
    assert cut.endswith(b"\r\n")
    response = _post(client, path, cut, content_type)
    problem = assert_problem(response, status=400, slug="malformed-multipart", path=path)
    assert "closing boundary" in problem["detail"]
