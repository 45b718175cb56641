"""What the API calls: enqueue jobs, read their status, list them, cancel them.

Every function takes the Redis connection as an argument; nothing here runs a job or imports
torch. All RQ objects use RQ's `JSONSerializer`, so no pickle crosses Redis: job parameters,
results and meta are plain JSON.

Jobs are listed from a sorted set of their ids (score: enqueue time), because RQ keeps them
spread over one queue and several registries per status. Ids whose job has expired are pruned
from it when listed.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, cast

from redis import Redis
from rq import Queue
from rq.exceptions import DuplicateJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, Retry
from rq.results import Result
from rq.serializers import JSONSerializer

from service_config import Settings
from worker.deployment import check_no_other_deployment, deployment_of
from worker.errors import JobNotCancellable, JobNotFound
from worker.progress import update_job_meta, utc_now_iso
from worker.rq_failures import failure_error
from worker.server_paths import without_server_paths

__all__ = [
    "EVALUATION_QUEUE",
    "JOB_INDEX_KEY",
    "TRAINING_QUEUE",
    "JobStatus",
    "cancel_job",
    "enqueue_distillation",
    "enqueue_evaluation",
    "enqueue_preparation",
    "enqueue_training",
    "fetch_job",
    "get_job_info",
    "job_info",
    "list_jobs",
    "queue_for",
]

logger = logging.getLogger(__name__)

TRAINING_QUEUE = "training"
EVALUATION_QUEUE = "evaluation"
QUEUE_NAMES = (TRAINING_QUEUE, EVALUATION_QUEUE)
JOB_INDEX_KEY = "uvac:jobs"

# Job functions by import path, so enqueuing never imports the engine.
TRAIN_FUNCTION = "worker.jobs.train_job"
EVALUATE_FUNCTION = "worker.jobs.evaluate_job"
DISTILL_FUNCTION = "worker.distill.distill_job"
PREPARE_FUNCTION = "worker.prepare.prepare_job"
_KIND_BY_FUNCTION = {
    TRAIN_FUNCTION: "train",
    EVALUATE_FUNCTION: "evaluate",
    DISTILL_FUNCTION: "distill",
    PREPARE_FUNCTION: "prepare",
}


class JobStatus(StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    # Running, with a cancel request the run has not yet acted on (not an RQ status).
    CANCELING = "canceling"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"
    DEFERRED = "deferred"
    SCHEDULED = "scheduled"
    STOPPED = "stopped"


_ENDED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED}
_WAITING = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
# RQ statuses the contract does not name are, for a client, still waiting their turn.
_RQ_STATUS_ALIASES = {"created": "queued", "rate_limited": "queued", "ready_to_enqueue": "queued"}


def queue_for(redis: Redis, name: str) -> Queue:
    return Queue(name, connection=redis, serializer=JSONSerializer)


def fetch_job(redis: Redis, job_id: str) -> Job | None:
    try:
        return Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


# --- enqueue ---------------------------------------------------------------------------


def retry_policy(settings: Settings) -> Retry | None:
    # The job functions turn this off for failures that cannot pass (bad input); see jobs.py.
    if settings.job_retry_max < 1:
        return None
    return Retry(max=settings.job_retry_max, interval=list(settings.job_retry_intervals))


def _enqueue(
    redis: Redis,
    *,
    queue_name: str,
    function: str,
    params: dict[str, Any],
    job_id: str | None,
    timeout: int,
    description: str,
    settings: Settings,
) -> str:
    # Another deployment's workers would take this job and look for its data set in their
    # own volumes (worker.deployment).
    check_no_other_deployment(redis, deployment_of(settings))
    queue = queue_for(redis, queue_name)
    kind = _KIND_BY_FUNCTION[function]
    try:
        job = queue.enqueue_call(
            func=function,
            args=(dict(params),),
            timeout=timeout,
            result_ttl=settings.job_result_ttl,
            failure_ttl=settings.job_failure_ttl,
            job_id=job_id,
            meta={"kind": kind},
            retry=retry_policy(settings),
            description=description,
            unique=job_id is not None,
        )
    except DuplicateJobError:
        # The same id twice is the same request twice (a client retrying): one job.
        assert job_id is not None
        logger.info("job %s already exists; not enqueued again", job_id)
        return job_id
    redis.zadd(JOB_INDEX_KEY, {job.id: time.time()})
    logger.info("enqueued %s job %s on %s", kind, job.id, queue_name)
    return job.id


def enqueue_training(
    redis: Redis,
    params: dict[str, Any],
    *,
    job_id: str | None = None,
    settings: Settings,
) -> str:
    """Queue a training run; returns the job id. ``params`` as in docs/architecture.md."""
    return _enqueue(
        redis,
        queue_name=TRAINING_QUEUE,
        function=TRAIN_FUNCTION,
        params=params,
        job_id=job_id,
        timeout=settings.training_job_timeout,
        description=f"train {params.get('model_name')} on {params.get('dataset_id')}",
        settings=settings,
    )


def enqueue_evaluation(
    redis: Redis,
    params: dict[str, Any],
    *,
    job_id: str | None = None,
    settings: Settings,
) -> str:
    """Queue an evaluation (``{"model_ref", "dataset_id"}``); returns the job id."""
    return _enqueue(
        redis,
        queue_name=EVALUATION_QUEUE,
        function=EVALUATE_FUNCTION,
        params=params,
        job_id=job_id,
        timeout=settings.evaluation_job_timeout,
        description=f"evaluate {params.get('model_ref')} on {params.get('dataset_id')}",
        settings=settings,
    )


def enqueue_distillation(
    redis: Redis,
    params: dict[str, Any],
    *,
    job_id: str | None = None,
    settings: Settings,
) -> str:
    """Queue a distillation (``{"teacher_ref", "dataset_id", ...}``, see `worker.distill`) on
    the training queue, under the training time limit; returns the job id."""
    return _enqueue(
        redis,
        queue_name=TRAINING_QUEUE,
        function=DISTILL_FUNCTION,
        params=params,
        job_id=job_id,
        timeout=settings.training_job_timeout,
        description=f"distil {params.get('teacher_ref')} on {params.get('dataset_id')}",
        settings=settings,
    )


def enqueue_preparation(
    redis: Redis,
    params: dict[str, Any],
    *,
    job_id: str | None = None,
    settings: Settings,
) -> str:
    """Queue the embedding of a data set into the cache (``{"dataset_id", "preset",
    "features"}``, see `worker.prepare`) on the evaluation queue, so that a training worker
    stays free for the first training; returns the job id."""
    return _enqueue(
        redis,
        queue_name=EVALUATION_QUEUE,
        function=PREPARE_FUNCTION,
        params=params,
        job_id=job_id,
        timeout=settings.training_job_timeout,
        description=f"embed {params.get('dataset_id')} for {params.get('preset', 'the default')}",
        settings=settings,
    )


# --- read ------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # RQ stores UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def job_status(job: Job) -> JobStatus:
    """The contract's status of a job whose fields were just fetched.

    A training run that stopped on a cancel request returns normally (so nothing is marked
    failed); the worker then marks it canceled, and its meta says so in the meantime. A
    running job asked to stop is "canceling" until it does.
    """
    raw = job.get_status(refresh=False)
    return _contract_status(raw.value if isinstance(raw, Enum) else str(raw), job.meta)


def _contract_status(rq_status: str, meta: dict[str, Any]) -> JobStatus:
    if meta.get("canceled"):
        return JobStatus.CANCELED
    status = JobStatus(_RQ_STATUS_ALIASES.get(rq_status, rq_status))
    if status == JobStatus.STARTED and meta.get("cancel_requested"):
        return JobStatus.CANCELING
    return status


def _error(job: Job, status: JobStatus) -> dict[str, str] | None:
    if status not in (JobStatus.FAILED, JobStatus.STOPPED):
        return None
    recorded = job.meta.get("error")
    if isinstance(recorded, dict) and "type" in recorded:
        message = without_server_paths(str(recorded.get("message", "")))
        return {"type": str(recorded["type"]), "message": message}
    if status == JobStatus.STOPPED:
        return {"type": "JobStopped", "message": "The job was stopped by an operator."}
    # No error recorded by the job itself (the process died, or RQ failed it): RQ's note.
    error_type, message = failure_error(_failure_text(job))
    return {"type": error_type, "message": without_server_paths(message)}


def _failure_text(job: Job) -> str:
    """RQ's record of the last failure (a traceback, or a note such as AbandonedJobError)."""
    latest = job.latest_result()
    if latest is not None and latest.type == Result.Type.FAILED:
        return latest.exc_string or ""
    return ""


def _result(job: Job, status: JobStatus) -> Any:
    if status != JobStatus.FINISHED:
        return None
    try:
        return job.return_value()
    except Exception:  # an expired or unreadable result is not worth failing a status read
        logger.exception("job %s: result unreadable", job.id)
        return None


def job_info(job: Job) -> dict[str, Any]:
    """The contract's job document (docs/architecture.md) for a fetched job."""
    status = job_status(job)
    meta = job.meta
    kind = meta.get("kind") or _KIND_BY_FUNCTION.get(job.func_name or "", "unknown")
    try:
        params = job.args[0] if job.args else {}
    except Exception:  # a job whose arguments cannot be decoded still has a status
        params = {}
    return {
        "id": job.id,
        "kind": kind,
        "status": status.value,
        "params": params,
        "progress": meta.get("progress"),
        "result": _result(job, status),
        "error": _error(job, status),
        "enqueued_at": _iso(job.enqueued_at),
        "started_at": _iso(job.started_at),
        "ended_at": _iso(job.ended_at),
    }


def get_job_info(redis: Redis, job_id: str) -> dict[str, Any] | None:
    job = fetch_job(redis, job_id)
    return None if job is None else job_info(job)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def list_jobs(
    redis: Redis, *, status: str | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[dict[str, Any]], int]:
    """Jobs newest first, optionally of one status; and how many match in all.

    Without a status only the page's jobs are read (the index is ordered by submission).
    A status lives in each job's own record, so a status filter reads the status and meta
    fields of every indexed job (in batches, one round trip each), then the page's jobs.
    """
    if status is None:
        return _page_of_all_jobs(redis, offset=offset, limit=limit)
    matching = _ids_with_status(redis, JobStatus(status))
    page = matching[offset : offset + limit]
    jobs = Job.fetch_many(page, connection=redis, serializer=JSONSerializer) if page else []
    return [job_info(job) for job in jobs if job is not None], len(matching)


# Status fields read per Redis round trip when a listing filters by status.
_STATUS_SCAN_CHUNK = 500


def _ids_with_status(redis: Redis, wanted: JobStatus) -> list[str]:
    """Ids of the indexed jobs in ``wanted``, newest first, from two fields of each job's
    record (its RQ status and its meta) rather than the whole job; expired ones leave the
    index."""
    matching: list[str] = []
    start = 0
    while True:
        raw = cast(list[Any], redis.zrevrange(JOB_INDEX_KEY, start, start + _STATUS_SCAN_CHUNK - 1))
        if not raw:
            return matching
        ids = [_text(item) for item in raw]
        pipeline = redis.pipeline(transaction=False)
        for job_id in ids:
            pipeline.hmget(Job.key_for(job_id), "status", "meta")
        gone = []
        for job_id, (rq_status, meta) in zip(ids, pipeline.execute(), strict=True):
            if rq_status is None:
                gone.append(job_id)
                continue
            if _contract_status(_text(rq_status), _meta(meta)) == wanted:
                matching.append(job_id)
        if gone:
            redis.zrem(JOB_INDEX_KEY, *gone)
        start += len(ids) - len(gone)


def _meta(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        meta = JSONSerializer.loads(raw)
    except ValueError:  # unreadable meta: no cancel flags to read
        return {}
    return meta if isinstance(meta, dict) else {}


def _page_of_all_jobs(redis: Redis, *, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    while True:
        raw = cast(list[Any], redis.zrevrange(JOB_INDEX_KEY, offset, offset + limit - 1))
        ids = [_text(item) for item in raw]
        jobs = Job.fetch_many(ids, connection=redis, serializer=JSONSerializer) if ids else []
        gone = [job_id for job_id, job in zip(ids, jobs, strict=True) if job is None]
        if not gone:
            total = int(cast(int, redis.zcard(JOB_INDEX_KEY)))
            return [job_info(job) for job in jobs if job is not None], total
        # Expired jobs leave the index; read the page again without them.
        redis.zrem(JOB_INDEX_KEY, *gone)


def active_jobs_using_dataset(redis: Redis, dataset_id: str) -> list[str]:
    """Ids of the jobs not yet ended (waiting or running) whose parameters name the data set."""
    ids = [_text(raw) for raw in cast(list[Any], redis.zrevrange(JOB_INDEX_KEY, 0, -1))]
    jobs = Job.fetch_many(ids, connection=redis, serializer=JSONSerializer) if ids else []
    using = []
    for job in jobs:
        if job is None or job_status(job) in _ENDED:
            continue
        try:
            params = job.args[0] if job.args else {}
        except Exception:  # undecodable arguments: cannot name the data set
            continue
        if isinstance(params, dict) and dataset_id in (
            params.get("dataset_id"),
            params.get("reference_dataset_id"),
        ):
            using.append(job.id)
    return using


# --- cancel ----------------------------------------------------------------------------


def cancel_job(redis: Redis, job_id: str) -> dict[str, Any]:
    """Cancel a job: a waiting one leaves its queue at once; a running one is asked to stop.

    A running training run checks the flag between batches and is marked canceled within
    seconds; until then its document says "canceling". Raises `JobNotFound`, or
    `JobNotCancellable` for a job that already ended.
    """
    job = fetch_job(redis, job_id)
    if job is None:
        raise JobNotFound(f"No job {job_id!r}.")
    status = job_status(job)
    if status in _ENDED:
        raise JobNotCancellable(f"Job {job_id} has already ended ({status.value}).")
    # The flag first: should a worker take the job between here and RQ's cancel, the run
    # still sees it before its first batch.
    update_job_meta(job, {"cancel_requested": True, "cancel_requested_at": utc_now_iso()})
    if job.get_status(refresh=True).value in {s.value for s in _WAITING}:
        # InvalidJobOperation: canceled by someone else in the meantime.
        with contextlib.suppress(InvalidJobOperation):
            job.cancel()
        logger.info("job %s canceled while %s", job_id, status.value)
    else:
        logger.info("job %s: cancellation requested while %s", job_id, status.value)
    refreshed = fetch_job(redis, job_id)
    if refreshed is None:
        raise JobNotFound(f"No job {job_id!r}.")
    return job_info(refreshed)
