"""The documentation pages work on a network with no way out, and `GET /` points at them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from app.main import API_VERSION, create_app
from tests.app.conftest import make_settings

# Every URL a page loads: src=, href=, spec-url= attributes, url(...) and "url": '...'.
_REFERENCE = re.compile(
    r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url\s*[:(]\s*["']([^"']+)["']"""
)


def _references(html: str) -> list[str]:
    return [first or second for first, second in _REFERENCE.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_a_docs_page_loads_everything_from_this_server(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    assert not re.search(r"https?://", html), "the page names another host"
    references = _references(html)
    assert any(ref.endswith(".js") for ref in references), references
    assert "/openapi.json" in references
    for reference in references:
        assert reference.startswith("/"), reference
        assert not reference.startswith("//"), reference
        loaded = client.get(reference)
        assert loaded.status_code == 200, reference
        assert len(loaded.content) > 0, reference


def test_the_swagger_bundle_reads_openapi_3_1(client: TestClient) -> None:
    # FastAPI writes OpenAPI 3.1, which Swagger UI renders from version 5 on.
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert re.search(r'version:"5\.\d+\.\d+"|"5\.\d+\.\d+"', bundle.text)


def test_docs_and_their_assets_stay_open_with_api_keys(
    tmp_path: Path, redis_db: redis.Redis
) -> None:
    settings = make_settings(tmp_path, api_keys=("secret",))
    with TestClient(create_app(settings)) as secured:
        for page in ("/docs", "/redoc"):
            assert secured.get(page).status_code == 200
            for reference in _references(secured.get(page).text):
                assert secured.get(reference).status_code == 200, reference
        assert secured.get("/").status_code == 200
        assert secured.get("/v1/models").status_code == 401


def test_the_root_names_the_docs_and_the_version(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == API_VERSION
    assert body["docs"] == "/docs"
    assert client.get(body["docs"]).status_code == 200
    assert client.get(body["openapi"]).status_code == 200
    assert client.head("/").status_code == 200
