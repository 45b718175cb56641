"""`ObjectBackend` on an S3 bucket (AWS S3, SeaweedFS, MinIO...): what ``s3://`` URLs open.

Client: boto3. It sends ``If-None-Match: *`` and ``If-Match: <etag>`` on ``PutObject`` as
typed parameters (``IfNoneMatch``, ``IfMatch``), reads the standard AWS variables and
config files for credentials when the settings name none, and reports refusals as the
HTTP status plus S3's error code, which is what we map here (never the message text).

Create-only and compare-and-swap are the server's: a 412 (``PreconditionFailed``) or a 409
(``ConditionalRequestConflict``, AWS's answer to two conditional writes at once) is a lost
race. Request checksums are sent only where S3 requires them, because S3-compatible
servers differ in which of the newer trailing checksums they accept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from object_storage.backend import StoredObject, check_key
from object_storage.errors import (
    ObjectExists,
    ObjectNotFound,
    PreconditionFailed,
    StorageAccessDenied,
    StorageError,
    StorageUnavailable,
)

__all__ = ["S3Backend", "S3Location"]

logger = logging.getLogger(__name__)

_LOST_RACE_STATUSES = {409, 412}
_DENIED_STATUSES = {401, 403}


@dataclass(frozen=True)
class S3Location:
    """A bucket, a key prefix inside it, and how to reach and sign for it.

    Empty credentials mean boto3's own chain (``AWS_ACCESS_KEY_ID``, profiles, roles).
    """

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    max_attempts: int = 3

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{where} at {self.endpoint_url or 'the AWS default endpoint'}"


class S3Backend:
    """Objects under ``s3://bucket/prefix/``."""

    def __init__(self, location: S3Location) -> None:
        self.location = location
        self._prefix = location.prefix.strip("/") + "/" if location.prefix.strip("/") else ""
        config = Config(
            connect_timeout=location.connect_timeout_s,
            read_timeout=location.read_timeout_s,
            retries={"max_attempts": location.max_attempts, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
        )
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=location.endpoint_url,
            region_name=location.region,
            aws_access_key_id=location.access_key_id or None,
            aws_secret_access_key=location.secret_access_key or None,
            config=config,
        )

    def describe(self) -> str:
        return self.location.describe()

    def _key(self, key: str) -> str:
        return self._prefix + check_key(key)

    @contextmanager
    def _errors(self, key: str | None, *, conditional: str | None = None) -> Iterator[None]:
        """Translate boto3's exceptions by status and error code, never by message."""
        where = self.describe()
        try:
            yield
        except botocore.exceptions.ClientError as error:
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            code = str(error.response.get("Error", {}).get("Code", ""))
            if status == 404 or code in ("NoSuchKey", "NotFound"):
                if code == "NoSuchBucket":
                    raise StorageUnavailable(f"bucket missing: {where}") from None
                raise ObjectNotFound(f"{key} not found in {where}") from None
            if status in _LOST_RACE_STATUSES and conditional == "create":
                raise ObjectExists(f"{key} already exists in {where}") from None
            if status in _LOST_RACE_STATUSES and conditional == "match":
                raise PreconditionFailed(f"{key} changed in {where}; read it again") from None
            if status in _DENIED_STATUSES:
                raise StorageAccessDenied(
                    f"{where} refused the credentials or permission ({code or status})"
                ) from None
            if status >= 500:
                raise StorageUnavailable(f"{where} answered {status} {code}") from None
            raise StorageError(f"{where} answered {status} {code} for {key}") from None
        except botocore.exceptions.NoCredentialsError:
            raise StorageAccessDenied(f"no credentials found for {where}") from None
        except (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectionError,
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ResponseStreamingError,
        ) as error:
            raise StorageUnavailable(f"{where} unreachable: {type(error).__name__}") from None

    def check(self) -> None:
        with self._errors(None):
            self._client.head_bucket(Bucket=self.location.bucket)

    def read(self, key: str) -> StoredObject:
        with self._errors(key):
            answer = self._client.get_object(Bucket=self.location.bucket, Key=self._key(key))
            data = answer["Body"].read()
        return StoredObject(data=data, etag=str(answer["ETag"]))

    def create(self, key: str, data: bytes) -> str:
        with self._errors(key, conditional="create"):
            answer = self._client.put_object(
                Bucket=self.location.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
            )
        return str(answer["ETag"])

    def create_from_file(self, key: str, source: Path) -> str:
        with source.open("rb") as stream, self._errors(key, conditional="create"):
            answer = self._client.put_object(
                Bucket=self.location.bucket, Key=self._key(key), Body=stream, IfNoneMatch="*"
            )
        return str(answer["ETag"])

    def upload(self, key: str, source: Path) -> str:
        with source.open("rb") as stream, self._errors(key):
            answer = self._client.put_object(
                Bucket=self.location.bucket, Key=self._key(key), Body=stream
            )
        return str(answer["ETag"])

    def replace(self, key: str, data: bytes, *, etag: str | None) -> str:
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        with self._errors(key, conditional="match"):
            answer = self._client.put_object(
                Bucket=self.location.bucket, Key=self._key(key), Body=data, **condition
            )
        return str(answer["ETag"])

    def download(self, key: str, destination: Path) -> None:
        with self._errors(key):
            answer = self._client.get_object(Bucket=self.location.bucket, Key=self._key(key))
            with destination.open("xb") as writer:
                for chunk in answer["Body"].iter_chunks(1 << 20):
                    writer.write(chunk)

    def exists(self, key: str) -> bool:
        try:
            with self._errors(key):
                self._client.head_object(Bucket=self.location.bucket, Key=self._key(key))
        except ObjectNotFound:
            return False
        return True

    def _pages(self, prefix: str, **extra: Any) -> Iterator[dict[str, Any]]:
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors(prefix):
            yield from paginator.paginate(
                Bucket=self.location.bucket, Prefix=self._prefix + prefix, **extra
            )

    def list_keys(self, prefix: str) -> list[str]:
        return [key for key, _written in self.list_written(prefix)]

    def list_written(self, prefix: str) -> list[tuple[str, float]]:
        start = len(self._prefix)
        written = [
            (entry["Key"][start:], entry["LastModified"].timestamp())
            for page in self._pages(prefix)
            for entry in page.get("Contents", [])
        ]
        return sorted(written)

    def list_folders(self, prefix: str) -> list[str]:
        start = len(self._prefix) + len(prefix)
        names = [
            entry["Prefix"][start:].rstrip("/")
            for page in self._pages(prefix, Delimiter="/")
            for entry in page.get("CommonPrefixes", [])
        ]
        return sorted(names)

    def delete(self, key: str) -> None:
        with self._errors(key):
            self._client.delete_object(Bucket=self.location.bucket, Key=self._key(key))
