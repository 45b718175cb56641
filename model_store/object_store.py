"""ObjectModelStore: the model store's contract on an object store (S3), by protocol.

The same versions, aliases, checksums and errors as `ModelStore` on a folder, with no lock
and no rename, which S3 has not (`model_store.object_layout` draws the keys):

- **Create-only, manifest last.** A publish uploads every file as a blob named by its SHA-256
  (create-only: an existing blob already holds exactly those bytes), then writes the version's
  ``MANIFEST.json`` with ``If-None-Match: *``. A version exists when its manifest does, and its
  manifest is written only after every byte it lists, so a reader never sees half a version,
  and a publisher killed (or an S3 server lost) at any point leaves at most unreferenced blobs.
- **Race-free numbers.** The manifest write is the claim on ``v<N>``: of two hosts publishing
  one name at once, one gets N, the other's create fails and it takes N+1 (its metadata.json,
  which names the number, is sealed again).
- **Compare-and-swap aliases.** ``aliases.json`` (and ``cluster_names.json``) move by
  ``If-Match`` on the ETag read before; a lost race re-reads and tries again, and after
  `CAS_ATTEMPTS` losses it is an `AliasConflict` (409), never a silent overwrite. ``latest``
  only moves forward, so two publishes finishing out of order leave it on the higher number.
- **Verified loads through a local cache.** A version is downloaded once per host into a
  `ContentCache` entry keyed by its manifest digest, every file checked against the manifest
  as it arrives; every load (`verify`, `load_verified`) hashes the cached files again, as the
  folder store does, and a cached copy that no longer matches is fetched again once.

Known limit: a version deleted at the instant another host promotes it can leave that alias
pointing at nothing; the alias then resolves to `NotFound`, never to other bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from model_store.aliases import AliasTable
from model_store.errors import AliasConflict, Corrupted, NotFound, StoreUnavailable
from model_store.fsutil import canonical_json
from model_store.manifest import MANIFEST_NAME, FileEntry, hash_file, manifest_document, verify_tree
from model_store.object_layout import (
    aliases_key,
    blob_key,
    manifest_key,
    report_file_key,
    report_pointer_key,
    version_number,
    versions_prefix,
)
from model_store.records import ModelSummary, ModelVersion, StagingPath
from model_store.refs import (
    LATEST_ALIAS,
    NAME_PATTERN,
    ModelRef,
    parse_ref,
    validate_alias,
    validate_name,
)
from model_store.version_files import METADATA_NAME, hash_staged_files, json_document
from object_storage import (
    ContentCache,
    ObjectBackend,
    ObjectExists,
    ObjectNotFound,
    PreconditionFailed,
    StorageAccessDenied,
    StorageUnavailable,
)

__all__ = ["CAS_ATTEMPTS", "ObjectModelStore"]

logger = logging.getLogger(__name__)

CAS_ATTEMPTS = 50
MAX_PAGE_SIZE = 1000
_CLAIM_ATTEMPTS = 1000
_T = TypeVar("_T")

_NAME_RE = re.compile(NAME_PATTERN)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@contextmanager
def _storage_errors() -> Iterator[None]:
    """The object store's outages as the store's own 503 (workers retry it)."""
    try:
        yield
    except (StorageUnavailable, StorageAccessDenied) as error:
        raise StoreUnavailable(str(error)) from error


class ObjectModelStore:
    """Versioned model store in ``backend``, with downloads kept in ``cache``.

    ``staging_root`` is a local folder for publishes in progress (the caller writes its files
    there before they are uploaded).
    """

    def __init__(self, backend: ObjectBackend, *, cache: ContentCache, staging_root: Path) -> None:
        self._backend = backend
        self._cache = cache
        self._staging_root = Path(staging_root)
        self._reader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="object-store")

    @property
    def backend(self) -> ObjectBackend:
        return self._backend

    def describe(self) -> str:
        return self._backend.describe()

    def check(self) -> None:
        """Raise `StoreUnavailable` (with the reason) when the object store cannot be used."""
        with _storage_errors():
            self._backend.check()

    # ------------------------------------------------------------------ reading

    def list_models(self) -> list[ModelSummary]:
        with _storage_errors():
            summaries = []
            for name in self._backend.list_folders(""):
                if _NAME_RE.fullmatch(name) is None:
                    continue
                numbers = self._version_numbers(name)
                if not numbers:
                    continue
                table, _etag = self._read_aliases(name)
                summaries.append(
                    ModelSummary(
                        name=name,
                        latest_version=numbers[-1],
                        version_count=len(numbers),
                        aliases=dict(sorted(table.targets.items())),
                    )
                )
            return summaries

    def list_versions(
        self, name: str, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[ModelVersion], int]:
        validate_name(name)
        if offset < 0 or not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"need offset >= 0 and 1 <= limit <= {MAX_PAGE_SIZE}")
        with _storage_errors():
            numbers = sorted(self._version_numbers(name), reverse=True)
            if not numbers:
                raise NotFound(f"model {name!r} not found")
            table, _etag = self._read_aliases(name)
            page = [self._version(name, n, table) for n in numbers[offset : offset + limit]]
            return page, len(numbers)

    def get(self, ref: str) -> ModelVersion:
        """Resolve a reference; the version's files are in the local cache afterwards."""
        parsed = parse_ref(ref)
        with _storage_errors():
            if parsed.version is None:
                table, _etag = self._read_aliases(parsed.name)
                number = self._resolve(parsed, table, check=False)
                return self._version(parsed.name, number, table)
            # A numbered version: its manifest and the alias table (for its aliases) are
            # read at once, so a load from the warm cache waits for one round trip.
            manifest = self._reader.submit(self._read_manifest, parsed.name, parsed.version)
            table, _etag = self._read_aliases(parsed.name)
            return self._version(
                parsed.name, parsed.version, table, manifest_bytes=manifest.result()
            )

    def verify(self, ref: str) -> ModelVersion:
        """Hash every cached file of the version against its manifest (fetched once more when
        the cached copy does not match); raise Corrupted listing the bad files."""
        version = self.get(ref)
        manifest = json.loads((version.path / MANIFEST_NAME).read_bytes())
        problems = verify_tree(version.path, manifest)
        if problems:
            logger.warning(
                "cached copy of %s is damaged (%s); fetching again", version.ref, problems
            )
            shutil.rmtree(version.path, ignore_errors=True)
            version = self.get(ref)
            problems = verify_tree(version.path, manifest)
        if problems:
            listing = ", ".join(f"{path} ({problem})" for path, problem in problems.items())
            raise Corrupted(
                f"{version.ref} does not match its manifest: {listing}",
                ref=version.ref,
                bad_files=list(problems),
            )
        return version

    def load_verified(self, ref: str) -> ModelVersion:
        return self.verify(ref)

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        validate_name(name)
        with _storage_errors():
            if not self._version_numbers(name):
                raise NotFound(f"model {name!r} not found")
            return list(self._read_aliases(name)[0].history)

    def report_path(self, ref: str) -> Path | None:
        """The current report of a version, fetched into the local cache; None when none."""
        version = self.get(ref)
        with _storage_errors():
            try:
                pointer = self._backend.read(report_pointer_key(version.name, version.version))
            except ObjectNotFound:
                return None
            document = json.loads(pointer.data)
            digest = hashlib.sha256(pointer.data).hexdigest()

            def fill(folder: Path) -> None:
                for relative in document["files"]:
                    target = folder / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    key = report_file_key(version.name, version.version, document["id"], relative)
                    self._backend.download(key, target)

            path, _cached = self._cache.entry(digest, fill)
            return path

    # ------------------------------------------------------------------ writing

    @contextmanager
    def publish(self, name: str, *, metadata: Mapping[str, Any]) -> Iterator[StagingPath]:
        """Yield an empty local folder; on clean exit publish it as ``name:v<next>``."""
        validate_name(name)
        document = json_document(metadata)
        self._staging_root.mkdir(parents=True, exist_ok=True)
        staging = StagingPath(self._staging_root / uuid.uuid4().hex)
        staging.mkdir()
        try:
            yield staging
            with _storage_errors():
                published = self._commit(name, Path(staging), document)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        staging._set_published(published)
        logger.info(
            "published %s (sha256 %s) to %s", published.ref, published.sha256, self.describe()
        )

    def promote(self, ref: str, alias: str) -> ModelVersion:
        parsed = parse_ref(ref)
        validate_alias(alias)
        with _storage_errors():

            def move(table: AliasTable) -> int:
                number = self._resolve(parsed, table)
                table.move(alias, number, action="promote", at=_now())
                return number

            number, table = self._update_aliases(parsed.name, move)
            logger.info("promoted %s:v%d to @%s", parsed.name, number, alias)
            return self._version(parsed.name, number, table)

    def rollback(self, name: str, alias: str) -> ModelVersion:
        validate_name(name)
        validate_alias(alias)
        with _storage_errors():
            self._require_model(name)

            def back(table: AliasTable) -> int:
                return table.roll_back(
                    alias,
                    exists=lambda n: self._backend.exists(manifest_key(name, n)),
                    at=_now(),
                )

            number, table = self._update_aliases(name, back)
            logger.info("rolled %s@%s back to v%d", name, alias, number)
            return self._version(name, number, table)

    def remove_alias(self, name: str, alias: str) -> None:
        validate_name(name)
        validate_alias(alias)
        with _storage_errors():
            self._require_model(name)
            self._update_aliases(name, lambda table: table.remove(alias, at=_now()))

    def delete(self, ref: str) -> None:
        """Delete a version (its manifest: it disappears at once); refused while aliased.

        Its blobs stay: they are stored by content and other versions may share them.
        """
        parsed = parse_ref(ref)
        with _storage_errors():

            def check_unaliased(table: AliasTable) -> int:
                number = self._resolve(parsed, table)
                pointing = table.aliases_of(number)
                if pointing:
                    raise AliasConflict(
                        f"{parsed.name}:v{number} is the target of "
                        + ", ".join(f"@{alias}" for alias in pointing)
                        + "; promote, roll back or remove those aliases first"
                    )
                table.history.append(
                    {"alias": None, "action": "delete", "version": None,
                     "from_version": number, "at": _now()}
                )  # fmt: skip
                return number

            # Writing the table (with the deletion in its history) makes a promote that
            # read it before lose its compare-and-swap and look again.
            number, _table = self._update_aliases(parsed.name, check_unaliased)
            self._backend.delete(manifest_key(parsed.name, number))
            logger.info("deleted %s:v%d", parsed.name, number)

    def apply_retention(self, name: str, *, keep: int) -> list[int]:
        validate_name(name)
        if keep < 0:
            raise ValueError("keep must be >= 0")
        with _storage_errors():
            numbers = self._version_numbers(name)
            if not numbers:
                raise NotFound(f"model {name!r} not found")
            table, _etag = self._read_aliases(name)
            aliased = set(table.targets.values())
            unaliased = [n for n in sorted(numbers, reverse=True) if n not in aliased]
            doomed = sorted(unaliased[keep:])
            deleted = []
            for number in doomed:
                try:
                    self.delete(f"{name}:v{number}")
                except (AliasConflict, NotFound):
                    continue  # promoted or deleted meanwhile by another host
                deleted.append(number)
            return deleted

    def write_report(self, ref: str, *, files: Mapping[str, bytes]) -> Path:
        """Replace the report of a version: upload under a new id, then move the pointer."""
        from model_store.store import _safe_report_path

        relative_paths = {_safe_report_path(path): bytes(data) for path, data in files.items()}
        version = self.get(ref)
        report_id = uuid.uuid4().hex
        with _storage_errors():
            for relative, data in relative_paths.items():
                key = report_file_key(version.name, version.version, report_id, relative)
                self._backend.create(key, data)
            pointer_key = report_pointer_key(version.name, version.version)
            document = canonical_json({"id": report_id, "files": sorted(relative_paths)})
            old: dict[str, Any] | None = None
            for _attempt in range(CAS_ATTEMPTS):
                try:
                    current = self._backend.read(pointer_key)
                    etag: str | None = current.etag
                    old = json.loads(current.data)
                except ObjectNotFound:
                    etag, old = None, None
                try:
                    self._backend.replace(pointer_key, document, etag=etag)
                    break
                except PreconditionFailed:
                    _pause()
            else:
                raise AliasConflict(f"the report of {version.ref} kept changing; try again")
            if old is not None:
                for relative in old.get("files", []):
                    self._backend.delete(
                        report_file_key(version.name, version.version, old["id"], relative)
                    )
        path = self.report_path(version.ref)
        assert path is not None
        return path

    def cleanup_staging(self, *, max_age_s: float = 3600.0) -> int:
        """Remove local publish folders untouched for ``max_age_s``."""
        if not self._staging_root.is_dir():
            return 0
        deadline = time.time() - max_age_s
        removed = 0
        for entry in self._staging_root.iterdir():
            if entry.stat().st_mtime <= deadline:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed

    def read_document(self, file_name: str, *, name: str) -> Any | None:
        """A JSON document kept beside a model's versions (``cluster_names.json``), or None."""
        validate_name(name)
        with _storage_errors():
            try:
                stored = self._backend.read(f"{name}/{file_name}")
            except ObjectNotFound:
                return None
        return json.loads(stored.data)

    def update_document(
        self, file_name: str, *, name: str, change: Callable[[Any | None], Any]
    ) -> Any:
        """Replace a JSON document beside a model's versions by compare-and-swap: ``change``
        gets the current document (None when none) and returns the new one."""
        validate_name(name)
        key = f"{name}/{file_name}"
        with _storage_errors():
            if not self._version_numbers(name):
                raise NotFound(f"model {name!r} not found")
            for _attempt in range(CAS_ATTEMPTS):
                try:
                    stored = self._backend.read(key)
                    current, etag = json.loads(stored.data), stored.etag
                except ObjectNotFound:
                    current, etag = None, None
                document = change(current)
                try:
                    self._backend.replace(key, canonical_json(document), etag=etag)
                except PreconditionFailed:
                    _pause()
                    continue
                return document
        raise AliasConflict(f"{key} changed {CAS_ATTEMPTS} times while it was edited; try again")

    # ------------------------------------------------------------------ internals

    def _version_numbers(self, name: str) -> list[int]:
        # Keys, not folders: some servers keep an emptied "folder" listed after a delete.
        prefix = versions_prefix(name)
        numbers = []
        for key in self._backend.list_keys(prefix):
            folder, _, file_name = key[len(prefix) :].partition("/")
            number = version_number(folder)
            if number is not None and file_name == MANIFEST_NAME:
                numbers.append(number)
        return sorted(numbers)

    def _require_model(self, name: str) -> None:
        if not self._version_numbers(name):
            raise NotFound(f"model {name!r} not found")

    def _read_aliases(self, name: str) -> tuple[AliasTable, str | None]:
        try:
            stored = self._backend.read(aliases_key(name))
        except ObjectNotFound:
            return AliasTable(name=name), None
        try:
            document = json.loads(stored.data)
        except ValueError as error:
            raise Corrupted(f"unreadable alias table of {name}: {error}", ref=name) from error
        source = f"{self.describe()}/{aliases_key(name)}"
        return AliasTable.from_document(document, name=name, source=source), stored.etag

    def _update_aliases(
        self, name: str, change: Callable[[AliasTable], _T]
    ) -> tuple[_T, AliasTable]:
        """Apply ``change`` to the alias table by compare-and-swap, retrying lost races."""
        for _attempt in range(CAS_ATTEMPTS):
            table, etag = self._read_aliases(name)
            result = change(table)
            try:
                self._backend.replace(
                    aliases_key(name), canonical_json(table.document()), etag=etag
                )
            except PreconditionFailed:
                _pause()
                continue
            return result, table
        raise AliasConflict(
            f"the aliases of {name!r} changed {CAS_ATTEMPTS} times while this move was tried; "
            "try again"
        )

    def _resolve(self, parsed: ModelRef, table: AliasTable, *, check: bool = True) -> int:
        """The version number ``parsed`` names; ``check``: and make sure it exists (a write
        about to point at it), else reading the version finds out."""
        if parsed.version is not None:
            number = parsed.version
        else:
            assert parsed.alias is not None
            if parsed.alias not in table.targets:
                if not self._version_numbers(parsed.name):
                    raise NotFound(f"model {parsed.name!r} not found")
                raise NotFound(f"alias {parsed} is not set")
            number = table.targets[parsed.alias]
        if check and not self._backend.exists(manifest_key(parsed.name, number)):
            if not self._version_numbers(parsed.name):
                raise NotFound(f"model {parsed.name!r} not found")
            raise NotFound(f"{parsed.name}:v{number} not found")
        return number

    def _read_manifest(self, name: str, number: int) -> bytes | None:
        try:
            return self._backend.read(manifest_key(name, number)).data
        except ObjectNotFound:
            return None

    def _version(
        self, name: str, number: int, table: AliasTable, *, manifest_bytes: bytes | None = None
    ) -> ModelVersion:
        """The version, its files fetched into the cache (checked) when not there yet."""
        ref = f"{name}:v{number}"
        if manifest_bytes is None:
            manifest_bytes = self._read_manifest(name, number)
        if manifest_bytes is None:
            raise NotFound(f"{ref} not found")
        path = self._materialise(name, ref, manifest_bytes)
        try:
            document = json.loads((path / METADATA_NAME).read_bytes())
        except (OSError, ValueError) as error:
            raise Corrupted(f"{ref} has unreadable metadata: {error}", ref=ref) from error
        if document.get("name") != name or document.get("version") != number:
            raise Corrupted(
                f"{ref}: metadata.json does not describe this version",
                ref=ref,
                bad_files=[METADATA_NAME],
            )
        return ModelVersion(
            name=name,
            version=number,
            ref=ref,
            path=path,
            sha256=hashlib.sha256(manifest_bytes).hexdigest(),
            metadata=document["metadata"],
            created_at=str(document.get("created_at", "")),
            aliases=table.aliases_of(number),
        )

    def _materialise(self, name: str, ref: str, manifest_bytes: bytes) -> Path:
        digest = hashlib.sha256(manifest_bytes).hexdigest()
        try:
            manifest = json.loads(manifest_bytes)
            listed = {
                relative: (entry["sha256"], int(entry["size"]))
                for relative, entry in manifest["files"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise Corrupted(f"{ref} has an unreadable manifest: {error}", ref=ref) from error

        def fill(folder: Path) -> None:
            bad = []
            for relative, (sha256, size) in sorted(listed.items()):
                target = folder / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self._backend.download(blob_key(name, sha256), target)
                except ObjectNotFound:
                    bad.append(relative)
                    continue
                if hash_file(target) != FileEntry(sha256=sha256, size=size):
                    bad.append(relative)
            if bad:
                raise Corrupted(
                    f"{ref} does not match its manifest: {', '.join(bad)}",
                    ref=ref,
                    bad_files=bad,
                )
            (folder / MANIFEST_NAME).write_bytes(manifest_bytes)

        path, _cached = self._cache.entry(digest, fill)
        return path

    def _commit(self, name: str, staging: Path, metadata: dict[str, Any]) -> ModelVersion:
        entries = hash_staged_files(staging)
        for relative, entry in sorted(entries.items()):
            # An existing blob holds the same bytes, stored before by this or another version.
            with suppress(ObjectExists):
                self._backend.create_from_file(blob_key(name, entry.sha256), staging / relative)
        for _attempt in range(_CLAIM_ATTEMPTS):
            number = max(self._version_numbers(name), default=0) + 1
            created_at = _now()
            metadata_bytes = canonical_json(
                {
                    "format": 1,
                    "name": name,
                    "version": number,
                    "ref": f"{name}:v{number}",
                    "created_at": created_at,
                    "metadata": metadata,
                }
            )
            metadata_entry = FileEntry(
                sha256=hashlib.sha256(metadata_bytes).hexdigest(), size=len(metadata_bytes)
            )
            with suppress(ObjectExists):
                self._backend.create(blob_key(name, metadata_entry.sha256), metadata_bytes)
            all_entries = {**entries, METADATA_NAME: metadata_entry}
            manifest_bytes = canonical_json(manifest_document(all_entries))
            try:
                self._backend.create(manifest_key(name, number), manifest_bytes)
            except ObjectExists:
                logger.info("%s:v%d was taken by another publisher; trying the next", name, number)
                continue
            break
        else:
            raise AliasConflict(f"no free version number for {name!r} after many tries")
        self._seed_cache(staging, manifest_bytes, metadata_bytes)

        def move_latest(table: AliasTable) -> None:
            current = table.targets.get(LATEST_ALIAS)
            if current is None or current < number:
                table.move(LATEST_ALIAS, number, action="publish", at=created_at)

        _result, table = self._update_aliases(name, move_latest)
        return self._version(name, number, table)

    def _seed_cache(self, staging: Path, manifest_bytes: bytes, metadata_bytes: bytes) -> None:
        """Put the publisher's own copy in the cache: it need not download what it wrote."""

        def fill(folder: Path) -> None:
            shutil.copytree(staging, folder, dirs_exist_ok=True)
            (folder / METADATA_NAME).write_bytes(metadata_bytes)
            (folder / MANIFEST_NAME).write_bytes(manifest_bytes)

        self._cache.entry(hashlib.sha256(manifest_bytes).hexdigest(), fill)


def _pause() -> None:
    """A short random wait after a lost compare-and-swap, so racers spread out."""
    time.sleep(random.uniform(0.0, 0.05))
