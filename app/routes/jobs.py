"""Training and evaluation jobs: submit (`POST /train`, `POST /evaluate`), list, get, cancel.

These routes are plain `def`s: redis-py and RQ block, so FastAPI runs them in its thread
pool. When Redis cannot be reached the redis-py error becomes a 503 problem with
`Retry-After` (app/problems.py); nothing else in the API needs Redis.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response

from app.deps import (
    CallerDep,
    DatasetStoreDep,
    MetricsDep,
    ModelStoreDep,
    PageDep,
    RedisDep,
    SettingsDep,
)
from app.idempotency import release, reserve_job_id
from app.job_limits import check_evaluation_fits
from app.openapi_docs import problem_responses
from app.schemas import EvaluateRequest, JobList, JobPublic, JobStatusFilter, TrainRequest
from app.submission_rate import SubmissionAllowance
from app.training_limits import check_training_fits, manifest_items
from uvac.evaluation import evaluation_recordings, held_out_paths, is_own_dataset
from uvac.selection import is_sweep, parse_sweep
from worker import queues
from worker.errors import JobNotFound

router = APIRouter(tags=["jobs"])

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
JobIdPath = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="The job id.")]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Retrying with the same key (and body) returns the same job instead "
        "of starting another; the same key with a different body is a 409.",
    ),
]


def job_location(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def _job_public(info: dict[str, Any]) -> JobPublic:
    return JobPublic.model_validate(info)


def submit_job(
    *,
    kind: str,
    params: dict[str, Any],
    enqueue: Any,
    response: Response,
    caller: str,
    redis: RedisDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    idempotency_key: str | None,
) -> JobPublic:
    reservation = reserve_job_id(
        redis,
        idempotency_key=idempotency_key,
        caller=caller,
        scope=kind,
        params=params,
        ttl_seconds=settings.idempotency_ttl_seconds,
    )
    if not reservation.replayed:
        try:
            enqueue(redis, params, job_id=reservation.job_id, settings=settings)
        except BaseException:
            release(redis, idempotency_key=idempotency_key, caller=caller, scope=kind)
            raise
        metrics.jobs_submitted.labels(kind=kind).inc()
    response.headers["Location"] = job_location(reservation.job_id)
    if reservation.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    info = queues.get_job_info(redis, reservation.job_id)
    if info is None:  # a concurrent first request has reserved the id but not enqueued yet
        info = {"id": reservation.job_id, "kind": kind, "status": "queued", "params": params}
    return _job_public(info)


@router.post(
    "/train",
    status_code=202,
    response_model=JobPublic,
    summary="Start a training job",
    description="Trains a model on an uploaded data set in the worker. Answers 202 with "
    "`Location: /v1/jobs/{id}`; poll that for progress. The finished job's result names the "
    "published model version (promote it with `PUT /v1/models/{name}/aliases/{alias}`).",
    responses=problem_responses(401, 403, 404, 409, 422, 429, 503),
)
def submit_training(
    _allowance: SubmissionAllowance,
    body: TrainRequest,
    response: Response,
    caller: CallerDep,
    redis: RedisDep,
    datasets: DatasetStoreDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobPublic:
    manifest = datasets.get(body.dataset_id)  # 404 now rather than a failed job later
    if body.reference_dataset_id is not None:
        datasets.get(body.reference_dataset_id)
    if is_sweep(body.job_params()):  # the sweep's size is a deployment limit, not a schema one
        parse_sweep(body.job_params(), max_candidates=settings.max_sweep_candidates)
    check_training_fits(body, manifest, max_bytes=settings.max_training_memory_bytes)
    return submit_job(
        kind="train",
        params=body.job_params(),
        enqueue=queues.enqueue_training,
        response=response,
        caller=caller,
        redis=redis,
        settings=settings,
        metrics=metrics,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/evaluate",
    status_code=202,
    response_model=JobPublic,
    summary="Start an evaluation job",
    description="Evaluates a model version on a data set; the job's result points at the "
    "report (`GET /v1/models/{name}/versions/{v}/report`). On the model's own data set it "
    "runs on the recordings training held out unless `split` is `all`; a `held-out` split "
    "that does not exist (another data set, or a model that held none out) is a 422 "
    "`invalid-split`.",
    responses=problem_responses(401, 403, 404, 409, 422, 429, 503),
)
def submit_evaluation(
    _allowance: SubmissionAllowance,
    body: EvaluateRequest,
    response: Response,
    caller: CallerDep,
    redis: RedisDep,
    datasets: DatasetStoreDep,
    store: ModelStoreDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobPublic:
    version = store.get(body.model_ref)  # NotFound -> 404, InvalidReference -> 422
    manifest = datasets.get(body.dataset_id)
    # A held-out split that does not exist is a 422 now rather than a failed job later.
    chosen = evaluation_recordings(
        manifest_items(manifest),
        split=body.split,
        dataset_id=manifest.id,
        own_dataset=is_own_dataset(
            version.metadata, dataset_id=manifest.id, digest=manifest.digest
        ),
        held_out_paths=held_out_paths(version.metadata),
    )
    if body.unknown_dataset_id is not None:
        datasets.get(body.unknown_dataset_id)
    check_evaluation_fits(
        version,
        manifest,
        [item.relpath for item in chosen.items],
        max_bytes=settings.max_training_memory_bytes,
    )
    return submit_job(
        kind="evaluate",
        params=body.job_params(),
        enqueue=queues.enqueue_evaluation,
        response=response,
        caller=caller,
        redis=redis,
        settings=settings,
        metrics=metrics,
        idempotency_key=idempotency_key,
    )


@router.get(
    "/jobs",
    response_model=JobList,
    summary="List jobs",
    responses=problem_responses(401, 403, 422, 503),
)
def list_jobs(
    redis: RedisDep,
    page: PageDep,
    status: Annotated[JobStatusFilter | None, Query(description="Only jobs in this state.")] = None,
) -> JobList:
    infos, total = queues.list_jobs(
        redis,
        status=status.value if status is not None else None,
        offset=page.offset,
        limit=page.limit,
    )
    return JobList(data=[_job_public(info) for info in infos], count=total)


@router.get(
    "/jobs/{job_id}",
    response_model=JobPublic,
    summary="Get a job: status, progress, result or error",
    responses=problem_responses(401, 403, 404, 422, 503),
)
def get_job(job_id: JobIdPath, redis: RedisDep) -> JobPublic:
    info = queues.get_job_info(redis, job_id)
    if info is None:
        raise JobNotFound(f"No job {job_id!r} (it never existed or its record expired).")
    return _job_public(info)


@router.delete(
    "/jobs/{job_id}",
    status_code=202,
    response_model=JobPublic,
    summary="Cancel a queued or running job",
    description="A queued job is cancelled at once (`canceled`); a running one answers "
    "`canceling` and stops at its next batch (poll the job to see it reach `canceled`). A job "
    "that already ended is a 409.",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def cancel_job(job_id: JobIdPath, redis: RedisDep) -> JobPublic:
    return _job_public(queues.cancel_job(redis, job_id))
