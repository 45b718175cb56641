"""The routers: business routes (mounted at /v1), the two legacy ones (at the root) and health."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.deps import require_api_key
from app.routes import (
    browser,
    cluster,
    clusters,
    datasets,
    distill,
    export,
    health,
    jobs,
    models,
    novelty,
    prepare,
    stream,
)

__all__ = [
    "BUSINESS_ROUTERS",
    "LEGACY_ROUTES",
    "PAGE_ASSETS_PATH",
    "UPLOAD_PATHS",
    "build_assets_router",
    "build_business_router",
    "build_legacy_router",
    "health",
    "stream",
]

# Routes that read their (multipart) body themselves, with their own caps.
UPLOAD_PATHS = ("/cluster", "/cluster/batch", "/datasets")
# The fitting backend's existing contract, which predates /v1: these answer at the root too.
LEGACY_ROUTES = frozenset({("POST", "/cluster"), ("POST", "/train")})


# Scripts and styles of the pages: no data in them, so no key guards them.
PAGE_ASSETS_PATH = "/page-assets/{file_name}"


# The routers of the business routes, in the order they are matched.
BUSINESS_ROUTERS = (
    cluster.router,
    jobs.router,
    distill.router,
    prepare.router,
    datasets.router,
    models.router,
    clusters.router,
    novelty.router,
    export.router,
    browser.router,
)


def build_business_router() -> APIRouter:
    """Every business route, behind the API key check (a no-op when no keys are set)."""
    router = APIRouter(dependencies=[Depends(require_api_key)])
    for business in BUSINESS_ROUTERS:
        router.include_router(business)
    return router


def build_assets_router() -> APIRouter:
    """The pages' scripts and styles (open: a browser fetches them before any session)."""
    return browser.assets_router


def build_legacy_router() -> APIRouter:
    """`LEGACY_ROUTES`: the same handlers as under /v1, behind the same API key check."""
    router = APIRouter(dependencies=[Depends(require_api_key)])
    router.add_api_route("/cluster", cluster.cluster, methods=["POST"])
    router.add_api_route("/train", jobs.submit_training, methods=["POST"], status_code=202)
    return router
