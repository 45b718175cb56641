"""The data set store a URL names: ``file://`` (or a path) is the folder store, ``s3://`` the
object store with a local cache."""

from __future__ import annotations

from pathlib import Path

from dataset_store.object_store import ObjectDatasetStore
from dataset_store.store import DatasetStore
from object_storage import ContentCache, S3Options, is_s3_url, local_path, open_backend

__all__ = ["open_dataset_store"]


def open_dataset_store(
    url: str, *, s3: S3Options | None = None, cache_dir: Path, cache_max_bytes: int
) -> DatasetStore:
    """The store at ``url``; ``cache_dir`` holds this host's downloads and uploads in progress."""
    if not is_s3_url(url):
        return DatasetStore(local_path(url))
    return ObjectDatasetStore(
        open_backend(url, s3=s3),
        cache=ContentCache(cache_dir / "recordings", max_bytes=cache_max_bytes),
        work_root=cache_dir / "uploads",
    )
