"""The object store's write and read protocol, free of the store's bookkeeping.

- `update_json`: compare-and-swap of one JSON object on its ETag, retried after a lost race.
- `store_files` and `claim_version`: blobs by content, then the version's record (its
  manifest and metadata.json), whose create-only write is the claim on the version number
  (the loser takes the next). `VersionRecord` reads a record back.
- `materialise` and `seed_cache`: a version's files in this host's cache, checked.
- `collect_garbage`: blobs no record lists, once older than a grace.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from model_store.errors import AliasConflict, Corrupted
from model_store.fsutil import canonical_json
from model_store.manifest import MANIFEST_NAME, FileEntry, hash_file, manifest_document
from model_store.object_layout import (
    blob_key,
    blobs_prefix,
    manifest_key,
    version_number,
    versions_prefix,
)
from model_store.version_files import METADATA_NAME, metadata_digest
from object_storage import (
    ContentCache,
    ObjectBackend,
    ObjectExists,
    ObjectNotFound,
    PreconditionFailed,
)

__all__ = [
    "CAS_ATTEMPTS",
    "ClaimedVersion",
    "VersionRecord",
    "claim_version",
    "collect_garbage",
    "materialise",
    "seed_cache",
    "store_files",
    "update_json",
    "version_numbers",
]

CAS_ATTEMPTS = 50
RECORD_FORMAT = 1
_CLAIM_ATTEMPTS = 1000
_T = TypeVar("_T")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def pause() -> None:
    """A short random wait after a lost compare-and-swap, so racers spread out."""
    time.sleep(random.uniform(0.0, 0.05))


def update_json(
    backend: ObjectBackend, key: str, change: Callable[[Any | None], tuple[_T, Any]]
) -> _T:
    """Replace the JSON object ``key`` by compare-and-swap: ``change(current or None)`` returns
    (result, new document); a lost race reads again, and `CAS_ATTEMPTS` losses are a 409."""
    for _attempt in range(CAS_ATTEMPTS):
        try:
            stored = backend.read(key)
            current, etag = json.loads(stored.data), stored.etag
        except ObjectNotFound:
            current, etag = None, None
        result, document = change(current)
        try:
            backend.replace(key, canonical_json(document), etag=etag)
        except PreconditionFailed:
            pause()
            continue
        return result
    raise AliasConflict(f"{key} changed {CAS_ATTEMPTS} times while this change was tried; retry")


def version_numbers(backend: ObjectBackend, name: str) -> list[int]:
    """The numbers of the versions whose manifest exists, ascending."""
    # Keys, not folders: some servers keep an emptied "folder" listed after a delete.
    prefix = versions_prefix(name)
    numbers = []
    for key in backend.list_keys(prefix):
        folder, _, file_name = key[len(prefix) :].partition("/")
        number = version_number(folder)
        if number is not None and file_name == MANIFEST_NAME:
            numbers.append(number)
    return sorted(numbers)


def store_files(
    backend: ObjectBackend, name: str, staging: Path, entries: dict[str, FileEntry]
) -> None:
    """Upload every staged file as the blob of its SHA-256.

    Written even when the blob exists (the bytes are the same, whoever wrote them): that
    renews its time, so `collect_garbage` cannot take a blob that an unfinished publish
    will list.
    """
    for relative, entry in sorted(entries.items()):
        backend.upload(blob_key(name, entry.sha256), staging / relative)


def collect_garbage(
    backend: ObjectBackend, name: str, *, grace_s: float, only: set[str] | None = None
) -> list[str]:
    """Delete the blobs of ``name`` that no version's record lists and that were written
    more than ``grace_s`` ago (``only``: just those digests); returns the digests deleted.

    The grace is what makes this safe beside publishes on other hosts: a publish writes its
    blobs just before its record, so a blob it will list is younger than any publish.
    """
    written = backend.list_written(blobs_prefix(name))
    listed: set[str] = set()
    for number in version_numbers(backend, name):
        try:
            record_bytes = backend.read(manifest_key(name, number)).data
        except ObjectNotFound:
            continue  # deleted meanwhile
        record = VersionRecord(f"{name}:v{number}", record_bytes)
        listed.update(sha256 for sha256, _size in record.files.values())
    cutoff = time.time() - grace_s
    deleted = []
    for key, at in written:
        digest = key[len(blobs_prefix(name)) :]
        if digest in listed or at > cutoff or (only is not None and digest not in only):
            continue
        backend.delete(key)
        deleted.append(digest)
    return deleted


class ClaimedVersion:
    """What `claim_version` wrote: the number, its created_at and the version record."""

    def __init__(self, number: int, created_at: str, record: bytes) -> None:
        self.number = number
        self.created_at = created_at
        self.record_bytes = record


def claim_version(
    backend: ObjectBackend, name: str, entries: dict[str, FileEntry], metadata: dict[str, Any]
) -> ClaimedVersion:
    """Write the next free ``v<N>/MANIFEST.json`` record (create-only) over stored files."""
    manifest = manifest_document(entries, metadata_sha256=metadata_digest(metadata))
    for _attempt in range(_CLAIM_ATTEMPTS):
        number = max(version_numbers(backend, name), default=0) + 1
        created_at = now()
        document = {"format": 1, "name": name, "version": number, "ref": f"{name}:v{number}",
                    "created_at": created_at, "metadata": metadata}  # fmt: skip
        record = canonical_json(
            {"record": RECORD_FORMAT, "manifest": manifest, METADATA_NAME: document}
        )
        try:
            backend.create(manifest_key(name, number), record)
        except ObjectExists:
            continue  # another publisher took v<number>: take the next
        return ClaimedVersion(number, created_at, record)
    raise AliasConflict(f"no free version number for {name!r} after {_CLAIM_ATTEMPTS} tries")


class VersionRecord:
    """A version record read back: the manifest (the same bytes a folder store writes, whose
    SHA-256 is the version's identity) and ``metadata.json`` (None in a record written before
    records existed, which was a manifest listing ``metadata.json`` as a blob)."""

    def __init__(self, ref: str, record_bytes: bytes) -> None:
        self.ref = ref
        try:
            document = json.loads(record_bytes)
            if isinstance(document, dict) and document.get("record") == RECORD_FORMAT:
                self.manifest = document["manifest"]
                self.manifest_bytes = canonical_json(self.manifest)
                self.metadata_bytes: bytes | None = canonical_json(document[METADATA_NAME])
            else:
                self.manifest, self.manifest_bytes, self.metadata_bytes = (
                    document,
                    record_bytes,
                    None,
                )
            self.files = {
                relative: (entry["sha256"], int(entry["size"]))
                for relative, entry in self.manifest["files"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise Corrupted(f"{ref} has an unreadable manifest: {error}", ref=ref) from error
        # The cache entry is per publication (the record names the number and time), so two
        # versions of the same model never share a cached metadata.json.
        self.cache_key = hashlib.sha256(record_bytes).hexdigest()
        self.sha256 = hashlib.sha256(self.manifest_bytes).hexdigest()


def materialise(
    backend: ObjectBackend, cache: ContentCache, name: str, record: VersionRecord
) -> Path:
    """The version's folder in the cache, downloaded and checked file by file when absent."""
    ref = record.ref

    def fill(folder: Path) -> None:
        bad = []
        for relative, (sha256, size) in sorted(record.files.items()):
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                backend.download(blob_key(name, sha256), target)
            except ObjectNotFound:
                bad.append(relative)
                continue
            if hash_file(target) != FileEntry(sha256=sha256, size=size):
                bad.append(relative)
        if bad:
            raise Corrupted(
                f"{ref} does not match its manifest: {', '.join(bad)}", ref=ref, bad_files=bad
            )
        if record.metadata_bytes is not None:
            (folder / METADATA_NAME).write_bytes(record.metadata_bytes)
        (folder / MANIFEST_NAME).write_bytes(record.manifest_bytes)

    path, _cached = cache.entry(record.cache_key, fill)
    return path


def seed_cache(cache: ContentCache, staging: Path, record: VersionRecord) -> None:
    """Put the publisher's own copy in the cache: it need not download what it wrote."""

    def fill(folder: Path) -> None:
        for path in staging.rglob("*"):
            target = folder / path.relative_to(staging)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                path.replace(target)  # same file system: the staged bytes move, not copy
        assert record.metadata_bytes is not None
        (folder / METADATA_NAME).write_bytes(record.metadata_bytes)
        (folder / MANIFEST_NAME).write_bytes(record.manifest_bytes)

    cache.entry(record.cache_key, fill)
