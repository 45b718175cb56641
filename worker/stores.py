"""The stores a job opens, as the settings name them (folders, or S3 with this host's cache)."""

from __future__ import annotations

from model_store import AnyModelStore, open_model_store
from service_config import Settings

__all__ = ["model_store"]


def model_store(settings: Settings) -> AnyModelStore:
    return open_model_store(
        settings.model_store_location,
        s3=settings.s3_options(),
        cache_dir=settings.cache_path / "models",
        cache_max_bytes=settings.cache_max_bytes,
    )
