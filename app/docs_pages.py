"""The documentation pages (`/docs`, `/redoc`) and the service's front door (`GET /`).

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on an air-gapped network they
are blank. Here both pages load their scripts and styles from this server: the files come
from the `fastapi-offline` wheel (Swagger UI 5, which reads OpenAPI 3.1, and ReDoc's
standalone bundle), served under `DOCS_ASSETS_PATH`. The pages reference no other host
(ReDoc's Google fonts are left out), which tests/app/test_docs_pages.py holds.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

from app.schemas import ServiceIndex

__all__ = ["DOCS_ASSETS_PATH", "install_docs_pages", "root_router"]

DOCS_ASSETS_PATH = "/docs/assets"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"


def _assets_folder() -> Path:
    # The wheel's layout (pinned in pyproject.toml): fastapi_offline/static/*.
    return Path(str(files("fastapi_offline") / "static"))


def install_docs_pages(app: FastAPI) -> None:
    """Serve `/docs` and `/redoc` from local files. Build the app with `docs_url=None` and
    `redoc_url=None`, so FastAPI's CDN pages are not mounted too."""
    app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=_assets_folder()), name="docs-assets")

    def assets(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{DOCS_ASSETS_PATH}"

    def openapi_url(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{app.openapi_url}"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url(request),
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
            swagger_js_url=f"{assets(request)}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets(request)}/swagger-ui.css",
            swagger_favicon_url=f"{assets(request)}/favicon.png",
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url(request),
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{assets(request)}/redoc.standalone.js",
            redoc_favicon_url=f"{assets(request)}/favicon.png",
            with_google_fonts=False,
        )


def root_router(*, version: str) -> APIRouter:
    """`GET /`: where a person who opens the bare address should go next."""
    router = APIRouter(tags=["operations"])

    @router.get("/", response_model=ServiceIndex, summary="Where the documentation is")
    async def index() -> ServiceIndex:
        return ServiceIndex(
            version=version,
            docs=DOCS_URL,
            redoc=REDOC_URL,
            openapi="/openapi.json",
            api="/v1",
            health="/readyz",
        )

    return router
