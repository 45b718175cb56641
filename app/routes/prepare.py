"""`POST /v1/prepare`: embed a data set into the embedding cache in the background (a job)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.deps import CallerDep, DatasetStoreDep, MetricsDep, RedisDep, SettingsDep
from app.job_limits import check_preparation_fits
from app.openapi_docs import problem_responses
from app.routes.jobs import IdempotencyKeyHeader, submit_job
from app.schemas import JobPublic
from app.schemas.prepare import PrepareRequest
from app.submission_rate import SubmissionAllowance
from worker import queues

router = APIRouter(tags=["jobs"])


@router.post(
    "/prepare",
    status_code=202,
    response_model=JobPublic,
    summary="Embed a data set ahead of training",
    description="Runs the preset's encoder over every recording of the data set and keeps "
    "the embeddings beside the data sets, so that training, evaluation and every later job "
    "on it skip the encoder. Optional: a training job embeds what is missing itself. "
    "Answers 202 with `Location: /v1/jobs/{id}`.",
    responses=problem_responses(401, 403, 404, 409, 422, 429, 503),
)
def submit_preparation(
    _allowance: SubmissionAllowance,
    body: PrepareRequest,
    response: Response,
    caller: CallerDep,
    redis: RedisDep,
    datasets: DatasetStoreDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobPublic:
    manifest = datasets.get(body.dataset_id)  # 404 now rather than a failed job later
    check_preparation_fits(body, manifest, max_bytes=settings.max_training_memory_bytes)
    return submit_job(
        kind="prepare",
        params=body.job_params(),
        enqueue=queues.enqueue_preparation,
        response=response,
        caller=caller,
        redis=redis,
        settings=settings,
        metrics=metrics,
        idempotency_key=idempotency_key,
    )
