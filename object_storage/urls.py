"""Storage chosen by URL: ``file:///path`` (or a bare path) or ``s3://bucket/prefix``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from object_storage.backend import ObjectBackend
from object_storage.file_backend import FileBackend
from object_storage.s3_backend import S3Backend, S3Location

__all__ = ["S3Options", "is_s3_url", "local_path", "open_backend"]


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3 server; empty fields fall back to boto3's own (AWS) chain."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_attempts: int = 3


def is_s3_url(url: str) -> bool:
    return urlsplit(url).scheme == "s3"


def local_path(url: str) -> Path:
    """The folder of a ``file://`` URL or a plain path."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return Path(parts.path if parts.scheme else url)
    raise ValueError(f"{url!r} is not a local folder (file:// or a path)")


def open_backend(url: str, *, s3: S3Options | None = None) -> ObjectBackend:
    """The backend a URL names; ``s3://bucket/prefix`` is reached through ``s3``."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"{url!r} names no bucket (s3://bucket/prefix)")
        options = s3 or S3Options()
        return S3Backend(
            S3Location(
                bucket=parts.netloc,
                prefix=parts.path.strip("/"),
                endpoint_url=options.endpoint_url,
                region=options.region,
                access_key_id=options.access_key_id,
                secret_access_key=options.secret_access_key,
                connect_timeout_s=options.connect_timeout_s,
                read_timeout_s=options.read_timeout_s,
                max_attempts=options.max_attempts,
            )
        )
    return FileBackend(local_path(url))
