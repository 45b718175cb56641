"""Health and readiness bodies."""

from __future__ import annotations

from pydantic import BaseModel


class CheckResult(BaseModel):
    ok: bool
    detail: str | None = None


class ModelCheck(CheckResult):
    ref: str | None = None
    sha256: str | None = None
    last_refused: str | None = None


class Readiness(BaseModel):
    status: str
    model: ModelCheck
    redis: CheckResult


class Liveness(BaseModel):
    status: str = "ok"


class ServiceIndex(BaseModel):
    """`GET /`: the service's version and where its documentation and routes are."""

    service: str = "uvac-service"
    version: str
    docs: str
    redoc: str
    openapi: str
    api: str
    health: str
