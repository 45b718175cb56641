"""The routers: business routes (mounted at /v1), the two legacy ones (at the root) and health."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.deps import require_api_key
from app.routes import (
    cluster,
    clusters,
    datasets,
    distill,
    export,
    health,
    jobs,
    models,
    prepare,
)

__all__ = [
    "LEGACY_ROUTES",
    "UPLOAD_PATHS",
    "build_business_router",
    "build_legacy_router",
    "health",
]

# Routes that read their (multipart) body themselves, with their own caps.
UPLOAD_PATHS = ("/cluster", "/cluster/batch", "/datasets")
# The fitting backend's existing contract, which predates /v1: these answer at the root too.
LEGACY_ROUTES = frozenset({("POST", "/cluster"), ("POST", "/train")})


def build_business_router() -> APIRouter:
    """Every business route, behind the API key check (a no-op when no keys are set)."""
    router = APIRouter(dependencies=[Depends(require_api_key)])
    router.include_router(cluster.router)
    router.include_router(jobs.router)
    router.include_router(distill.router)
    router.include_router(prepare.router)
    router.include_router(datasets.router)
    router.include_router(models.router)
    router.include_router(clusters.router)
    router.include_router(export.router)
    return router


def build_legacy_router() -> APIRouter:
    """`LEGACY_ROUTES`: the same handlers as under /v1, behind the same API key check."""
    router = APIRouter(dependencies=[Depends(require_api_key)])
    router.add_api_route("/cluster", cluster.cluster, methods=["POST"])
    router.add_api_route("/train", jobs.submit_training, methods=["POST"], status_code=202)
    return router
