"""What every job function shares: its failure policy, its parameter checks, how it
settles its end (cancelled, handed back, failed, published), and meta writes.

Failures: a failure that may pass (Redis unreachable or timing out, the store's lock busy) is
re-raised with the job's retry policy intact, so RQ retries it with back-off. Anything else (a
missing data set, bad parameters, undecodable audio, a bug) fails at once: the job records
``meta["error"] = {"type", "message"}`` for the API and turns its remaining retries off before
re-raising.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from rq.job import Job

from dataset_store import DatasetManifest, DatasetStorageUnavailable, DatasetStore
from model_store import StoreBusy
from service_config import Settings
from uvac.errors import RunCancelled
from worker.errors import WorkerError
from worker.progress import ProgressReporter, update_job_meta, utc_now_iso

if TYPE_CHECKING:
    from uvac.audio import DatasetItem, EmbeddingCache
    from uvac.device import ThreadPolicy, Workload

__all__ = [
    "TRANSIENT_ERRORS",
    "InvalidJobParameters",
    "check_keys",
    "configure_torch",
    "dataset_items",
    "embedding_cache",
    "failure_policy",
    "interrupted",
    "job_reporter",
    "record",
    "remove_checkpoints",
    "settle_publication",
    "thread_policy",
]

logger = logging.getLogger(__name__)

# Failures worth a retry: the job itself was fine, Redis (or the store's lock, or the
# object storage under the stores) was not.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    StoreBusy,
    DatasetStorageUnavailable,
)


class InvalidJobParameters(WorkerError):
    status = 422
    slug = "invalid-job-parameters"
    title = "Invalid job parameters"


def record(job: Job | None, changes: Mapping[str, Any]) -> None:
    if job is None:
        return
    try:
        update_job_meta(job, changes)
    except redis.RedisError as error:
        logger.warning("job %s: meta not written (%s)", job.id, error)


@contextlib.contextmanager
def failure_policy(job: Job | None) -> Iterator[None]:
    try:
        yield
    except TRANSIENT_ERRORS as error:
        logger.warning("job %s: transient failure, RQ may retry: %r", job and job.id, error)
        record(job, {"last_error": {"type": type(error).__name__, "message": str(error)}})
        raise
    except Exception as error:
        # Bad input or a bug: the same parameters would fail the same way again.
        if job is not None:
            job.retries_left = 0
        message = str(error) or repr(error)
        logger.error("job %s failed: %s: %s", job and job.id, type(error).__name__, message)
        record(job, {"error": {"type": type(error).__name__, "message": message}})
        raise


def thread_policy(settings: Settings) -> ThreadPolicy:
    """This worker's thread count per workload (`uvac.device.choose_thread_policy`)."""
    from uvac.device import available_cores, choose_thread_policy

    return choose_thread_policy(
        cores=available_cores(),
        processes=settings.host_processes,
        overrides=settings.thread_overrides(),
    )


def configure_torch(settings: Settings, workload: Workload = "encoder") -> ThreadPolicy:
    """Threads for a job that starts with ``workload``; the policy, for its later phases."""
    from uvac.device import configure_threads

    policy = thread_policy(settings)
    configure_threads(policy.threads(workload))
    return policy


def job_reporter(job: Job | None, settings: Settings) -> ProgressReporter | None:
    """The job's progress writer and cancel check, at the configured rates (None without a
    job: a run called directly, as the tests and benchmarks do)."""
    if job is None:
        return None
    return ProgressReporter(
        job,
        interval_seconds=settings.progress_interval_seconds,
        cancel_poll_seconds=settings.cancel_poll_seconds,
    )


def check_keys(params: Mapping[str, Any], allowed: frozenset[str], required: set[str]) -> None:
    if not isinstance(params, Mapping):
        raise InvalidJobParameters(
            f"job parameters must be a JSON object, got {type(params).__name__}"
        )
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidJobParameters(f"unknown job parameters: {', '.join(unknown)}")
    missing = sorted(required - set(params))
    if missing:
        raise InvalidJobParameters(f"missing job parameters: {', '.join(missing)}")


def dataset_items(store: DatasetStore, manifest: DatasetManifest) -> list[DatasetItem]:
    """The engine's items for every accepted file of a data set, labels from its manifest."""
    from uvac.audio import DatasetItem

    root = store.path(manifest.id)
    return [
        DatasetItem(path=root / item.path, label=item.label, relpath=item.path, sha256=item.sha256)
        for item in manifest.files
    ]


def embedding_cache(settings: Settings) -> EmbeddingCache:
    """The store of encoder embeddings beside the data sets, shared by every job."""
    from uvac.audio import EmbeddingCache

    return EmbeddingCache(
        DatasetStore(settings.datasets_path).embeddings_path,
        max_bytes=settings.embedding_cache_max_bytes,
    )


def settle_publication(
    work: Callable[[], dict[str, Any]],
    *,
    job: Job | None,
    reporter: ProgressReporter | None,
    checkpoint_dir: Path | None,
) -> dict[str, Any]:
    """Run a publishing job's ``work`` and settle its end the way every such job does.

    A cancel marks the job cancelled and drops its checkpoints; a worker's shutdown hands the
    job back with its checkpoints (the next run resumes from them); a transient failure keeps
    them for RQ's retry and any other failure drops them; a publication is recorded in the
    meta, so a re-run after a lost worker answers it instead of publishing twice.
    """
    try:
        result = work()
    except RunCancelled as stop:
        if reporter is not None and reporter.interrupted:
            return interrupted(job)
        logger.info("job %s: %s", job and job.id, stop)
        record(job, {"canceled": True, "canceled_at": utc_now_iso(), "phase": "canceled"})
        remove_checkpoints(checkpoint_dir)
        return {"canceled": True}
    except Exception as error:
        if not isinstance(error, TRANSIENT_ERRORS):
            remove_checkpoints(checkpoint_dir)
        raise
    record(job, {"published": result, "phase": "done"})
    remove_checkpoints(checkpoint_dir)
    return result


def interrupted(job: Job | None) -> dict[str, Any]:
    """Stopped for a worker shutdown: the worker puts the job back on its queue."""
    logger.info("job %s: stopped for a worker shutdown; it will run again", job and job.id)
    record(job, {"interrupted": True, "interrupted_at": utc_now_iso(), "phase": "interrupted"})
    return {"interrupted": True}


def remove_checkpoints(checkpoint_dir: Path | None) -> None:
    if checkpoint_dir is not None:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
