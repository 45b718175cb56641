"""The model store a URL names: ``file://`` (or a path) is the folder store, ``s3://`` the
object store with a local cache."""

from __future__ import annotations

from pathlib import Path

from model_store.object_store import DEFAULT_REVALIDATE_S, ObjectModelStore
from model_store.store import ModelStore
from object_storage import ContentCache, S3Options, is_s3_url, local_path, open_backend

__all__ = ["AnyModelStore", "open_model_store"]

AnyModelStore = ModelStore | ObjectModelStore


def open_model_store(
    url: str,
    *,
    s3: S3Options | None = None,
    cache_dir: Path,
    cache_max_bytes: int,
    lock_timeout_s: float = 60.0,
    revalidate_s: float = DEFAULT_REVALIDATE_S,
) -> AnyModelStore:
    """The store at ``url``; ``cache_dir`` holds this host's downloads and ``revalidate_s`` is
    how long a load trusts a read of an exact version (object store only)."""
    if not is_s3_url(url):
        return ModelStore(local_path(url), lock_timeout_s=lock_timeout_s)
    return ObjectModelStore(
        open_backend(url, s3=s3),
        cache=ContentCache(cache_dir / "versions", max_bytes=cache_max_bytes),
        staging_root=cache_dir / "staging",
        revalidate_s=revalidate_s,
    )
