"""`Annotated` dependency aliases: a route's signature says what it needs.

The dependencies are `async def` although they never await: FastAPI runs a plain `def`
dependency in its thread pool, and a thread hop per dependency would cost more than the
whole forward pass of a short clip.

`require_api_key` is the API key check as a dependency (the caller's identity, and the
security schemes of the OpenAPI document); the rules are in app/auth.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import redis
from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from app.auth import authenticate
from app.batching import MicroBatcher
from app.metrics import AppMetrics
from app.problems import ApiProblem
from app.services import Services
from app.serving import ModelHolder
from dataset_store import DatasetStore
from model_store import AnyModelStore
from service_config import Settings
from uvac.audio import DecodeSlots


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings_of_app(services: ServicesDep) -> Settings:
    return services.settings


async def get_model_store(services: ServicesDep) -> AnyModelStore:
    return services.store


async def get_model_holder(services: ServicesDep) -> ModelHolder:
    return services.holder


async def get_batcher(services: ServicesDep) -> MicroBatcher:
    return services.batcher


async def get_dataset_store(services: ServicesDep) -> DatasetStore:
    return services.datasets


async def get_decode_slots(services: ServicesDep) -> DecodeSlots:
    return services.decode_slots


async def get_redis(services: ServicesDep) -> redis.Redis:
    return services.redis


async def get_metrics(services: ServicesDep) -> AppMetrics:
    return services.metrics


# How long a caller refused for a busy upload slot is told to wait.
_UPLOAD_RETRY_AFTER_SECONDS = 5


async def dataset_upload_slot(services: ServicesDep) -> AsyncIterator[None]:
    """Hold one of the `max_concurrent_dataset_uploads` slots for the request, or refuse it
    with 429 at once (waiting would hold the caller's upload in memory meanwhile)."""
    slots = services.dataset_uploads
    if slots.locked():
        limit = services.settings.max_concurrent_dataset_uploads
        raise ApiProblem(
            status=429,
            slug="too-many-uploads",
            detail=f"{limit} data set upload(s) are being processed, the most at once; "
            f"retry in {_UPLOAD_RETRY_AFTER_SECONDS} s.",
            headers={"Retry-After": str(_UPLOAD_RETRY_AFTER_SECONDS)},
        )
    async with slots:
        yield


SettingsDep = Annotated[Settings, Depends(get_settings_of_app)]
ModelStoreDep = Annotated[AnyModelStore, Depends(get_model_store)]
ModelHolderDep = Annotated[ModelHolder, Depends(get_model_holder)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
DatasetStoreDep = Annotated[DatasetStore, Depends(get_dataset_store)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
MetricsDep = Annotated[AppMetrics, Depends(get_metrics)]
DecodeSlotsDep = Annotated[DecodeSlots, Depends(get_decode_slots)]
DatasetUploadSlot = Depends(dataset_upload_slot)

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key, when keys are configured."
)
_bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


async def require_api_key(
    request: Request,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The caller's identity: a digest of its key, or "anonymous" when auth is off."""
    settings: Settings = request.app.state.settings
    presented = api_key or (bearer.credentials if bearer is not None else None)
    page_identity = getattr(request.state, "page_identity", None)
    if presented is None and isinstance(page_identity, str):
        return page_identity  # a page token, checked by ApiKeyMiddleware (app/page_sessions.py)
    return authenticate(settings, presented)


CallerDep = Annotated[str, Depends(require_api_key)]


# Beyond any list this service keeps; larger numbers overflow what Redis ranges accept.
MAX_PAGE_OFFSET = 2**31 - 1


class Page:
    """`offset`/`limit` query parameters shared by the list routes."""

    def __init__(
        self,
        offset: Annotated[
            int, Query(ge=0, le=MAX_PAGE_OFFSET, description="How many items to skip.")
        ] = 0,
        limit: Annotated[int, Query(ge=1, le=200, description="Page size.")] = 50,
    ) -> None:
        self.offset = offset
        self.limit = limit


PageDep = Annotated[Page, Depends()]
