"""The routers: business routes (one router, mounted at /v1 and at the root) and health."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.deps import require_api_key
from app.routes import cluster, datasets, health, jobs, models

__all__ = ["UPLOAD_PATHS", "build_business_router", "health"]

# Routes that read their (multipart) body themselves, with their own caps.
UPLOAD_PATHS = ("/cluster", "/cluster/batch", "/datasets")


def build_business_router() -> APIRouter:
    """Every business route, behind the API key check (a no-op when no keys are set)."""
    router = APIRouter(dependencies=[Depends(require_api_key)])
    router.include_router(cluster.router)
    router.include_router(jobs.router)
    router.include_router(datasets.router)
    router.include_router(models.router)
    return router
