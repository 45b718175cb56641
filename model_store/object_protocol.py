"""The object store's write and read protocol, free of the store's bookkeeping.

- `update_json`: compare-and-swap of one JSON object on its ETag, retried after a lost race.
- `store_files` and `claim_version`: blobs by content (create-only), then the manifest,
  whose create-only write is the claim on the version number (the loser takes the next).
- `materialise` and `seed_cache`: a version's files in this host's cache, checked.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from model_store.errors import AliasConflict, Corrupted
from model_store.fsutil import canonical_json
from model_store.manifest import MANIFEST_NAME, FileEntry, hash_file, manifest_document
from model_store.object_layout import blob_key, manifest_key, version_number, versions_prefix
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
    "claim_version",
    "materialise",
    "seed_cache",
    "store_files",
    "update_json",
    "version_numbers",
]

CAS_ATTEMPTS = 50
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
    """Upload every staged file as the blob of its SHA-256 (an existing blob holds the same
    bytes, stored before by this or another version)."""
    for relative, entry in sorted(entries.items()):
        with suppress(ObjectExists):
            backend.create_from_file(blob_key(name, entry.sha256), staging / relative)


class ClaimedVersion:
    """What `claim_version` wrote: the number, its created_at, metadata and manifest bytes."""

    def __init__(self, number: int, created_at: str, metadata: bytes, manifest: bytes) -> None:
        self.number = number
        self.created_at = created_at
        self.metadata_bytes = metadata
        self.manifest_bytes = manifest


def claim_version(
    backend: ObjectBackend, name: str, entries: dict[str, FileEntry], metadata: dict[str, Any]
) -> ClaimedVersion:
    """Write the next free ``v<N>/MANIFEST.json`` (create-only) over files already stored."""
    for _attempt in range(_CLAIM_ATTEMPTS):
        number = max(version_numbers(backend, name), default=0) + 1
        created_at = now()
        metadata_bytes = canonical_json(
            {"format": 1, "name": name, "version": number, "ref": f"{name}:v{number}",
             "created_at": created_at, "metadata": metadata}
        )  # fmt: skip
        metadata_entry = FileEntry(
            sha256=hashlib.sha256(metadata_bytes).hexdigest(), size=len(metadata_bytes)
        )
        with suppress(ObjectExists):
            backend.create(blob_key(name, metadata_entry.sha256), metadata_bytes)
        # metadata.json stays listed (a loader finds its blob through the manifest), so on S3
        # the version's digest still covers the publish time.
        manifest_bytes = canonical_json(
            manifest_document(
                {**entries, METADATA_NAME: metadata_entry},
                metadata_sha256=metadata_digest(metadata),
            )
        )
        try:
            backend.create(manifest_key(name, number), manifest_bytes)
        except ObjectExists:
            continue  # another publisher took v<number>: take the next
        return ClaimedVersion(number, created_at, metadata_bytes, manifest_bytes)
    raise AliasConflict(f"no free version number for {name!r} after {_CLAIM_ATTEMPTS} tries")


def materialise(
    backend: ObjectBackend, cache: ContentCache, name: str, ref: str, manifest_bytes: bytes
) -> Path:
    """The version's folder in the cache, downloaded and checked file by file when absent."""
    try:
        listed = {
            relative: (entry["sha256"], int(entry["size"]))
            for relative, entry in json.loads(manifest_bytes)["files"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise Corrupted(f"{ref} has an unreadable manifest: {error}", ref=ref) from error

    def fill(folder: Path) -> None:
        bad = []
        for relative, (sha256, size) in sorted(listed.items()):
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
        (folder / MANIFEST_NAME).write_bytes(manifest_bytes)

    path, _cached = cache.entry(hashlib.sha256(manifest_bytes).hexdigest(), fill)
    return path


def seed_cache(cache: ContentCache, staging: Path, claimed: ClaimedVersion) -> None:
    """Put the publisher's own copy in the cache: it need not download what it wrote."""

    def fill(folder: Path) -> None:
        for path in staging.rglob("*"):
            target = folder / path.relative_to(staging)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                path.replace(target)  # same file system: the staged bytes move, not copy
        (folder / METADATA_NAME).write_bytes(claimed.metadata_bytes)
        (folder / MANIFEST_NAME).write_bytes(claimed.manifest_bytes)

    cache.entry(hashlib.sha256(claimed.manifest_bytes).hexdigest(), fill)
