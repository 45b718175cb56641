"""The stores a job opens, as the settings name them (folders, or S3 with this host's cache)."""

from __future__ import annotations

from dataset_store import DatasetStore, open_dataset_store
from model_store import AnyModelStore, open_model_store
from service_config import Settings

__all__ = ["dataset_store", "model_store"]


def model_store(settings: Settings) -> AnyModelStore:
    return open_model_store(
        settings.model_store_location,
        s3=settings.s3_options(),
        cache_dir=settings.cache_path / "models",
        cache_max_bytes=settings.cache_max_bytes,
    )


def dataset_store(settings: Settings) -> DatasetStore:
    return open_dataset_store(
        settings.datasets_location,
        s3=settings.s3_options(),
        cache_dir=settings.cache_path / "datasets",
        cache_max_bytes=settings.cache_max_bytes,
    )
