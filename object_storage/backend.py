"""The small interface the stores are written against: keys, bytes and ETags.

A key is a relative POSIX path (``scenes/versions/v3/MANIFEST.json``). Two implementations:
`object_storage.file_backend.FileBackend` (a folder) and `object_storage.s3_backend.S3Backend`
(an S3 bucket and prefix). The guarantees the stores build on are the same on both:

- ``create`` is create-only: of two writers of one key exactly one succeeds, the other gets
  `ObjectExists` (S3: ``If-None-Match: *``; a folder: ``link(2)``, which refuses a target).
- ``replace`` is a compare-and-swap on the ETag read before (S3: ``If-Match``; a folder: the
  digest compared and the file renamed under a per-key ``flock``); the loser gets
  `PreconditionFailed` and must read again. ``etag=None`` means "only if it does not exist".
- A reader sees a whole object or none (S3 by definition; a folder by rename).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["ObjectBackend", "StoredObject", "check_key"]


@dataclass(frozen=True)
class StoredObject:
    """An object's bytes and the ETag to compare-and-swap it against."""

    data: bytes
    etag: str


class ObjectBackend(Protocol):
    """What a store needs from a place to keep objects."""

    def describe(self) -> str:
        """Where the objects are, for messages (``s3://bucket/prefix at endpoint``); no secret."""
        ...

    def check(self) -> None:
        """Raise `StorageUnavailable` or `StorageAccessDenied` when the storage cannot be used."""
        ...

    def read(self, key: str) -> StoredObject: ...

    def create(self, key: str, data: bytes) -> str:
        """Write ``key`` only if it does not exist (else `ObjectExists`); returns the ETag."""
        ...

    def create_from_file(self, key: str, source: Path) -> str:
        """``create`` with a local file's bytes, streamed."""
        ...

    def upload(self, key: str, source: Path) -> str:
        """Write ``key`` from a local file whatever is there: only for data one writer owns
        (a running job's checkpoints), never for what two hosts may write."""
        ...

    def replace(self, key: str, data: bytes, *, etag: str | None) -> str:
        """Write ``key`` only if its ETag is still ``etag`` (None: only if absent)."""
        ...

    def download(self, key: str, destination: Path) -> None:
        """Stream ``key`` into the new file ``destination``."""
        ...

    def exists(self, key: str) -> bool: ...

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (a folder-like prefix ending in ``/``), sorted."""
        ...

    def list_written(self, prefix: str) -> list[tuple[str, float]]:
        """``list_keys`` with when each key was last written (seconds since the epoch, by the
        storage's clock: S3's ``LastModified``, a file's modification time)."""
        ...

    def list_folders(self, prefix: str) -> list[str]:
        """The names one level below ``prefix`` that hold keys (``a/`` -> ``["b", "c"]``)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens when it is already gone."""
        ...


def check_key(key: str) -> str:
    """Refuse keys that could escape a folder or mean something else on S3."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid object key {key!r}")
    return key
