"""Liveness, readiness and metrics; open even when API keys are required.

- `/livez`: the process answers (no dependency checked).
- `/readyz`: a model is being served and Redis answers; 503 problem with the reasons if not.
- `/healthz`: for container health checks. It answers 200 while the process lives and
  reports readiness in the body: a container must not be restarted because Redis is down
  (clustering still works then) or no model has been trained yet.
- `/metrics`: Prometheus text format.
"""

from __future__ import annotations

import logging

import redis.exceptions
from fastapi import APIRouter, Response

from app.deps import MetricsDep, ServicesDep
from app.metrics import CONTENT_TYPE_LATEST
from app.openapi_docs import problem_responses
from app.problems import ApiProblem
from app.schemas import CheckResult, Liveness, ModelCheck, Readiness
from app.services import Services
from worker import queues

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


@router.get("/livez", response_model=Liveness, summary="Liveness")
async def livez() -> Liveness:
    return Liveness()


def _readiness(services: Services) -> Readiness:
    holder = services.holder
    current = holder.current
    model = ModelCheck(
        ok=current is not None,
        ref=current.version.ref if current else None,
        sha256=current.version.sha256 if current else None,
        detail=holder.unavailable_reason,
        last_refused=holder.last_refused,
    )
    try:
        services.redis.ping()
        redis_check = CheckResult(ok=True)
    except redis.exceptions.RedisError as error:
        redis_check = CheckResult(ok=False, detail=f"Redis does not answer: {error}")
    ready = model.ok and redis_check.ok
    return Readiness(status="ready" if ready else "not-ready", model=model, redis=redis_check)


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: model loaded and Redis reachable",
    responses=problem_responses(503),
)
def readyz(services: ServicesDep) -> Readiness:
    readiness = _readiness(services)
    if readiness.status != "ready":
        reasons = [
            f"{name}: {check.detail}"
            for name, check in (("model", readiness.model), ("redis", readiness.redis))
            if not check.ok
        ]
        raise ApiProblem(
            status=503,
            slug="not-ready",
            detail="; ".join(reasons),
            extensions={"checks": readiness.model_dump(exclude={"status"})},
            headers={"Retry-After": "5"},
        )
    return readiness


@router.get("/healthz", response_model=Readiness, summary="Container health check")
def healthz(services: ServicesDep) -> Readiness:
    return _readiness(services)


# Enough for any realistic job history; the index prunes expired jobs as it is read.
_MAX_JOBS_COUNTED = 100_000


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics"}},
)
def metrics(services: ServicesDep, app_metrics: MetricsDep) -> Response:
    try:
        jobs, _ = queues.list_jobs(services.redis, offset=0, limit=_MAX_JOBS_COUNTED)
    except redis.exceptions.RedisError as error:
        logger.debug("job counts unavailable: %s", error)
    else:
        counts = dict.fromkeys((status.value for status in queues.JobStatus), 0)
        for job in jobs:
            counts[job["status"]] = counts.get(job["status"], 0) + 1
        app_metrics.set_job_counts(counts)
    return Response(app_metrics.render(), media_type=CONTENT_TYPE_LATEST)
