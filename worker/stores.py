"""The stores a job opens, as the settings name them (folders, or S3 with this host's cache)."""

from __future__ import annotations

import shutil
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from dataset_store import DatasetStore, open_dataset_store
from model_store import AnyModelStore, open_model_store
from object_storage import is_s3_url, open_backend
from service_config import Settings
from worker.checkpoint_mirror import CheckpointMirror

__all__ = ["checkpoint_folder", "dataset_store", "discard_checkpoints", "model_store"]


def model_store(settings: Settings) -> AnyModelStore:
    return open_model_store(
        settings.model_store_location,
        s3=settings.s3_options(),
        cache_dir=settings.cache_path / "models",
        cache_max_bytes=settings.cache_max_bytes,
        revalidate_s=settings.s3_revalidate_seconds,
    )


def dataset_store(settings: Settings) -> DatasetStore:
    return open_dataset_store(
        settings.datasets_location,
        s3=settings.s3_options(),
        cache_dir=settings.cache_path / "datasets",
        cache_max_bytes=settings.cache_max_bytes,
    )


def checkpoint_folder(
    settings: Settings, job_id: str
) -> tuple[Path, AbstractContextManager[object]]:
    """The local folder a job checkpoints into, and the block to run the job in: on S3 a
    `CheckpointMirror` (restore first, upload while it runs), on a folder nothing."""
    location = settings.checkpoints_location
    if not is_s3_url(location):
        return settings.checkpoints_path / job_id, nullcontext()
    local = settings.cache_path / "checkpoints" / job_id
    backend = open_backend(location, s3=settings.s3_options())
    return local, CheckpointMirror(backend, job_id=job_id, local_dir=local)


def discard_checkpoints(settings: Settings, job_id: str) -> None:
    """Delete a job's checkpoints wherever they are (nothing will resume it any more)."""
    local, mirror = checkpoint_folder(settings, job_id)
    shutil.rmtree(local, ignore_errors=True)
    if isinstance(mirror, CheckpointMirror):
        mirror.remove()
