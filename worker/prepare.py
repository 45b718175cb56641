"""The prepare job: ``prepare_job(params)`` embeds a data set into the embedding cache in the
background, so that the first training on it starts with the encoder's work done.

Parameters: ``{"dataset_id"}`` and optionally ``preset`` (default: the default preset) and
``features`` (feature-config overrides), as a training job names them: the embeddings are the
ones that training would compute. A log-mel front-end has nothing to prepare. Progress:
``job.meta["progress"] = {"phase": "embedding", "files_done", "files", "updated_at"}``;
the result: ``{"dataset_id", "frontend", "recordings", "embedded", "skipped"}``. A cancel
stops it between files; whatever was embedded by then stays in the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rq import get_current_job
from rq.job import Job

from dataset_store import DatasetStore
from service_config import Settings, get_settings
from uvac.errors import RunCancelled
from worker.job_support import (
    InvalidJobParameters,
    check_keys,
    configure_torch,
    dataset_items,
    embedding_cache,
    failure_policy,
    interrupted,
    job_reporter,
    record,
)
from worker.progress import utc_now_iso

__all__ = ["prepare_job", "run_preparation"]

logger = logging.getLogger(__name__)

_PREPARE_KEYS = frozenset({"dataset_id", "preset", "features"})


def prepare_job(params: dict[str, Any]) -> dict[str, Any]:
    """Embed a data set into the cache; see the module docstring."""
    job = get_current_job()
    settings = get_settings()
    with failure_policy(job):
        configure_torch(settings, "encoder")
        return run_preparation(params, job=job, settings=settings)


def run_preparation(
    params: Mapping[str, Any], *, job: Job | None, settings: Settings
) -> dict[str, Any]:
    """The body of `prepare_job` (callable without RQ: ``job=None``)."""
    from uvac.audio import EmbeddingWindower, embed_items
    from uvac.training import DEFAULT_PRESET, build_configs

    check_keys(params, _PREPARE_KEYS, {"dataset_id"})
    try:
        feature_config, _ = build_configs(
            str(params.get("preset", DEFAULT_PRESET)),
            feature_overrides=params.get("features") or {},
        )
    except (TypeError, ValueError) as error:
        raise InvalidJobParameters(str(error)) from error
    datasets = DatasetStore(settings.datasets_path)
    manifest = datasets.get(str(params["dataset_id"]))
    items = dataset_items(datasets, manifest)
    summary: dict[str, Any] = {
        "dataset_id": manifest.id,
        "frontend": feature_config.frontend,
        "recordings": len(items),
        "embedded": 0,
        "skipped": 0,
    }
    if not feature_config.uses_encoder:
        record(job, {"phase": "done"})
        return summary

    reporter = job_reporter(job, settings)
    record(job, {"phase": "embedding"})

    def progress(done: int, total: int) -> None:
        if job is not None and (done == total or done % 16 == 0):
            document = {"phase": "embedding", "files_done": done, "files": total}
            record(job, {"progress": {**document, "updated_at": utc_now_iso()}})

    embedded = embed_items(
        items,
        embedder=EmbeddingWindower(feature_config),
        cache=embedding_cache(settings),
        should_stop=reporter.should_stop if reporter is not None else None,
        progress=progress,
    )
    try:
        for clip in embedded:
            summary["embedded" if clip.windows is not None else "skipped"] += 1
    except RunCancelled as stop:
        if reporter is not None and reporter.interrupted:
            return interrupted(job)  # the worker puts it back on its queue
        logger.info("job %s: %s", job and job.id, stop)
        record(job, {"canceled": True, "canceled_at": utc_now_iso(), "phase": "canceled"})
        return {"canceled": True}
    record(job, {"phase": "done"})
    return summary
