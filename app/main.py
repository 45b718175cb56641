"""The FastAPI application factory.

    uvicorn app.main:create_app --factory

`create_app(settings)` builds a fresh app; its lifespan opens the model store, loads the
served model, starts the micro-batcher and creates the Redis client (which connects lazily,
so the API starts and clusters even while Redis is down). Nothing happens at import time.

Business routes live under `/v1`; two of them also answer at the root (`POST /cluster`,
`POST /train`: the fitting backend's existing contract), left out of the OpenAPI document so
generated clients get one method per operation. Every GET route answers HEAD too
(`HeadAsGetMiddleware`; the document leaves HEAD out: it is GET without the body).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.docs_pages import (
    DOCS_ASSETS_PATH,
    DOCS_URL,
    OAUTH2_REDIRECT_URL,
    REDOC_URL,
    install_docs_pages,
    root_router,
)
from app.logging import configure_logging
from app.metrics import API_PREFIX, AppMetrics, MetricsMiddleware
from app.middleware import (
    ApiKeyMiddleware,
    BodySizeLimitMiddleware,
    HeadAsGetMiddleware,
    RequestIdMiddleware,
)
from app.openapi_docs import install_openapi
from app.pages import PAGE_ASSETS
from app.problems import register_problem_handlers
from app.routes import (
    BUSINESS_ROUTERS,
    LEGACY_ROUTES,
    PAGE_ASSETS_PATH,
    UPLOAD_PATHS,
    build_assets_router,
    build_business_router,
    build_legacy_router,
    health,
    stream,
)
from app.services import open_services
from service_config import Settings, get_settings

API_VERSION = "1.0.0"
DESCRIPTION = """Unsupervised acoustic-environment clustering (categorical UVAC).

Upload a recording to `POST /v1/cluster` to get its cluster posterior; train and evaluate
models on uploaded data sets through jobs; manage model versions and aliases.
Every error is an RFC 9457 `application/problem+json` document.
"""

OPENAPI_TAGS = [
    {"name": "clustering", "description": "Cluster recordings with a trained model."},
    {"name": "jobs", "description": "Training and evaluation jobs run by the worker."},
    {"name": "datasets", "description": "Uploaded archives of recordings."},
    {"name": "models", "description": "Model versions, aliases and evaluation reports."},
    {"name": "operations", "description": "Health, readiness and metrics."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Without `settings` (the uvicorn factory path: a process entry point)
    the environment is read and JSON logging is configured; tests pass their own settings
    and leave the process's logging alone."""
    if settings is None:
        settings = get_settings()
        configure_logging(level=settings.log_level)
    metrics = AppMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings, metrics=metrics) as services:
            app.state.services = services
            yield

    app = FastAPI(
        title="UVAC acoustic clustering service",
        version=API_VERSION,
        description=DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
        # Served from local files by install_docs_pages: FastAPI's own pages use a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    register_problem_handlers(app, redis_retry_after_seconds=settings.redis_retry_after_seconds)

    # add_middleware wraps: the last one added runs first. Request ids outermost, so even
    # CORS refusals and metrics-timed responses carry one; CORS answers preflights before
    # the key is asked for; the key is checked before any body is read or measured.
    upload_paths = frozenset(
        {API_PREFIX + path for path in UPLOAD_PATHS}
        | {path for _, path in LEGACY_ROUTES if path in UPLOAD_PATHS}
    )
    app.add_middleware(HeadAsGetMiddleware, router=app.router)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_body_bytes=settings.max_json_body_bytes,
        exempt_paths=upload_paths,
    )
    app.add_middleware(
        ApiKeyMiddleware,
        settings=settings,
        open_paths=_open_paths(app),
        open_prefixes=(DOCS_ASSETS_PATH + "/",),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["Location", "X-Request-ID", "Retry-After"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)

    app.include_router(root_router(version=API_VERSION))
    app.include_router(health.router)
    install_docs_pages(app)
    business = build_business_router()
    app.include_router(business, prefix=API_PREFIX)
    app.include_router(stream.router, prefix=API_PREFIX)
    app.include_router(build_assets_router(), prefix=API_PREFIX, include_in_schema=False)
    app.include_router(build_legacy_router(), include_in_schema=False)
    install_openapi(app, business_routers=BUSINESS_ROUTERS, prefix=API_PREFIX)
    return app


def _open_paths(app: FastAPI) -> frozenset[str]:
    """The paths no API key guards: the index, health and metrics, the documentation, and the
    pages' scripts and styles."""
    docs = (DOCS_URL, REDOC_URL, OAUTH2_REDIRECT_URL, app.openapi_url, "/")
    health_paths = {str(getattr(route, "path", "")) for route in health.router.routes}
    assets = {API_PREFIX + PAGE_ASSETS_PATH.format(file_name=name) for name in PAGE_ASSETS}
    return frozenset(health_paths | assets | {path for path in docs if path})
