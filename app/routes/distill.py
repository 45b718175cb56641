"""`POST /v1/distill`: train a device student from a stored teacher (a job, like training)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.deps import (
    CallerDep,
    DatasetStoreDep,
    MetricsDep,
    ModelStoreDep,
    RedisDep,
    SettingsDep,
)
from app.job_limits import check_distillation_fits
from app.openapi_docs import problem_responses
from app.routes.jobs import IdempotencyKeyHeader, submit_job
from app.schemas import JobPublic
from app.schemas.distill import DistillRequest
from app.submission_rate import SubmissionAllowance
from worker import queues

router = APIRouter(tags=["jobs"])


@router.post(
    "/distill",
    status_code=202,
    response_model=JobPublic,
    summary="Start a distillation job (a student for the device)",
    description="Trains a small `cat-uvac-h` student on 16 kHz log-mel windows to reproduce "
    "the teacher's cluster probabilities on the data set's recordings, then publishes it as "
    "a new version (metadata `teacher`: ref, version, sha256) with its device export "
    "(`GET /v1/models/{name}/versions/{v}/export`). Answers 202 with "
    "`Location: /v1/jobs/{id}`.",
    responses=problem_responses(401, 403, 404, 409, 422, 429, 503),
)
def submit_distillation(
    _allowance: SubmissionAllowance,
    body: DistillRequest,
    response: Response,
    caller: CallerDep,
    redis: RedisDep,
    datasets: DatasetStoreDep,
    store: ModelStoreDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobPublic:
    teacher = store.get(body.teacher_ref)  # 404 now rather than a failed job later
    manifest = datasets.get(body.dataset_id)
    check_distillation_fits(body, teacher, manifest, max_bytes=settings.max_training_memory_bytes)
    return submit_job(
        kind="distill",
        params=body.job_params(),
        enqueue=queues.enqueue_distillation,
        response=response,
        caller=caller,
        redis=redis,
        settings=settings,
        metrics=metrics,
        idempotency_key=idempotency_key,
    )
