"""Where the stores keep their objects: a local folder or an S3 bucket, chosen by URL.

`ObjectBackend` is the small interface (read, create-only write, compare-and-swap on the
ETag, list, delete) that `model_store.object_store` and the data set and checkpoint stores
are written against; `FileBackend` and `S3Backend` implement it with the same guarantees.
`ContentCache` keeps downloaded immutable content on each host, keyed by digest.
"""

from object_storage.backend import ObjectBackend, StoredObject
from object_storage.cache import ContentCache
from object_storage.errors import (
    ObjectExists,
    ObjectNotFound,
    PreconditionFailed,
    StorageAccessDenied,
    StorageError,
    StorageUnavailable,
)
from object_storage.file_backend import FileBackend
from object_storage.s3_backend import S3Backend, S3Location
from object_storage.urls import S3Options, is_s3_url, local_path, open_backend

__all__ = [
    "ContentCache",
    "FileBackend",
    "ObjectBackend",
    "ObjectExists",
    "ObjectNotFound",
    "PreconditionFailed",
    "S3Backend",
    "S3Location",
    "S3Options",
    "StorageAccessDenied",
    "StorageError",
    "StorageUnavailable",
    "StoredObject",
    "is_s3_url",
    "local_path",
    "open_backend",
]
