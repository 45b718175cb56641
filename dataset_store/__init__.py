"""Uploaded data sets on the shared volume: safe archive ingestion, manifests, lookups.

The API ingests uploads with it (in a thread) and the workers read the recordings back; it
sits beside `model_store/` and imports neither `app/` nor `worker/`.

- `dataset_store.store`: `DatasetStore`, manifests and the data set digest.
- `dataset_store.archives`: bounded unpacking of zip and tar (format detection, entry point);
  `dataset_store.zip_reader`, `dataset_store.tar_reader` (+ `dataset_store.tar_stream`) walk
  the entries, `dataset_store.unpacking` holds the limits, name rules and budget.
- `dataset_store.errors`: the store's exceptions, each with its HTTP status.
"""

from dataset_store.errors import (
    ArchiveRejected,
    ArchiveTooLarge,
    DatasetNotFound,
    DatasetStoreError,
    UnsupportedArchive,
)
from dataset_store.object_store import DatasetStorageUnavailable, ObjectDatasetStore
from dataset_store.opening import open_dataset_store
from dataset_store.store import (
    DatasetFile,
    DatasetManifest,
    DatasetStore,
    IngestLimits,
    RejectedFile,
    new_dataset_id,
)

__all__ = [
    "ArchiveRejected",
    "ArchiveTooLarge",
    "DatasetFile",
    "DatasetManifest",
    "DatasetNotFound",
    "DatasetStorageUnavailable",
    "DatasetStore",
    "DatasetStoreError",
    "IngestLimits",
    "ObjectDatasetStore",
    "RejectedFile",
    "UnsupportedArchive",
    "new_dataset_id",
    "open_dataset_store",
]
