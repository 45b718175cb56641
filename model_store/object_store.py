"""ObjectModelStore: the model store's contract on an object store (S3), by protocol.

The same versions, aliases, checksums and errors as `ModelStore` on a folder, with no lock
and no rename, which S3 has not (`model_store.object_layout` draws the keys):

- **Create-only, record last.** A publish uploads every file as a blob named by its SHA-256
  (the same bytes whoever writes them), then writes the version's record ``MANIFEST.json``
  with ``If-None-Match: *``. A version exists when its record does, and its record is
  written only after every byte it lists, so a reader never sees half a version, and a
  publisher killed (or an S3 server lost) at any point leaves at most unlisted blobs, which
  `collect_garbage` removes once they are older than its grace.
- **Race-free numbers.** The record's write is the claim on ``v<N>``: of two hosts publishing
  one name at once, one gets N, the other's create fails and it takes N+1 (its record, which
  names the number, is made again).
- **Compare-and-swap aliases.** ``aliases.json`` (and ``cluster_names.json``) move by
  ``If-Match`` on the ETag read before; a lost race re-reads and tries again, and after
  `object_protocol.CAS_ATTEMPTS` losses it is an `AliasConflict` (409), never a silent
  overwrite. ``latest`` only moves forward, so two publishes finishing out of order leave it
  on the higher number.
- **Verified loads through a local cache.** A version is downloaded once per host into a
  `ContentCache` entry keyed by its record's digest, every file checked against the manifest
  as it arrives; every load (`verify`, `load_verified`) hashes the cached files again, as the
  folder store does, and a cached copy that no longer matches is fetched again once.
- **Loads trust a recent read.** Versions are immutable, so a load of an exact ``name:vN``
  that this store read from S3 (its record) within ``revalidate_s`` asks S3 nothing: it
  hashes the cached copy. Later, the load reads the record again (overlapped with the
  hashing). So a version deleted on another host can still be loaded here for at most
  ``revalidate_s``; `get`, listings and alias references always read S3, and a deletion
  through this store is seen by it at once.
- **The identity is the model's.** The record at ``v<N>/MANIFEST.json`` holds the manifest
  (every file's SHA-256 and the metadata document's) and ``metadata.json`` (name, number,
  publish time); the version's ``sha256`` is that of the manifest alone, byte for byte what
  the folder store writes, so one model has one digest on both backends.

Known limit: a version deleted at the instant another host promotes it can leave that alias
pointing at nothing; the alias then resolves to `NotFound`, never to other bytes.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from model_store.aliases import AliasTable
from model_store.errors import AliasConflict, Corrupted, NotFound, StoreUnavailable
from model_store.manifest import MANIFEST_NAME
from model_store.object_layout import aliases_key, manifest_key, reports_prefix
from model_store.object_protocol import (
    VersionRecord,
    claim_version,
    collect_garbage,
    materialise,
    now,
    seed_cache,
    store_files,
    update_json,
    version_numbers,
)
from model_store.object_reports import fetch_report, replace_report
from model_store.records import ModelSummary, ModelVersion, StagingPath
from model_store.refs import (
    LATEST_ALIAS,
    NAME_PATTERN,
    ModelRef,
    parse_ref,
    validate_alias,
    validate_name,
)
from model_store.version_files import (
    METADATA_NAME,
    hash_staged_files,
    json_document,
    verify_files,
)
from object_storage import (
    ContentCache,
    ObjectBackend,
    ObjectNotFound,
    StorageAccessDenied,
    StorageUnavailable,
)

__all__ = ["ObjectModelStore"]

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
DEFAULT_REVALIDATE_S = 5.0
DEFAULT_GC_GRACE_S = 3600.0
_NAME_RE = re.compile(NAME_PATTERN)
_T = TypeVar("_T")


def _check_folder(path: Path) -> dict[str, str]:
    """A cached version's files against the manifest and metadata stored with them."""
    try:
        manifest = json.loads((path / MANIFEST_NAME).read_bytes())
        document = json.loads((path / METADATA_NAME).read_bytes())
        return verify_files(path, manifest, document.get("metadata"))
    except (OSError, ValueError, AttributeError) as error:  # evicted or damaged meanwhile
        return {MANIFEST_NAME: f"unreadable ({type(error).__name__})"}


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

    def __init__(
        self,
        backend: ObjectBackend,
        *,
        cache: ContentCache,
        staging_root: Path,
        revalidate_s: float = DEFAULT_REVALIDATE_S,
        gc_grace_s: float = DEFAULT_GC_GRACE_S,
    ) -> None:
        self._backend = backend
        self._cache = cache
        self._staging_root = Path(staging_root)
        self._revalidate_s = revalidate_s
        self._gc_grace_s = gc_grace_s
        self._reader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="object-store")
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="object-hash")
        # (name, number) -> the version as this store last read its record, and when
        # (time.monotonic); its path is the cache folder it was read into.
        self._read_at: dict[tuple[str, int], tuple[ModelVersion, float]] = {}

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
                numbers = version_numbers(self._backend, name) if _NAME_RE.fullmatch(name) else []
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
            numbers = sorted(self._require_model(name), reverse=True)
            table, _etag = self._read_aliases(name)
            page = [
                self._version(name, n, table.aliases_of(n))
                for n in numbers[offset : offset + limit]
            ]
            return page, len(numbers)

    def get(self, ref: str) -> ModelVersion:
        """Resolve a reference; the version's files are in the local cache afterwards."""
        parsed = parse_ref(ref)
        with _storage_errors():
            if parsed.version is None:
                table, _etag = self._read_aliases(parsed.name)
                number = self._resolve(parsed, table, check=False)
                return self._version(parsed.name, number, table.aliases_of(number))
            # A numbered version: its record and the alias table (for its aliases) are read
            # at once, so this waits for one round trip.
            record = self._reader.submit(self._read_record, parsed.name, parsed.version)
            table, _etag = self._read_aliases(parsed.name)
            aliases = table.aliases_of(parsed.version)
            return self._version(parsed.name, parsed.version, aliases, record.result())

    def verify(self, ref: str) -> ModelVersion:
        """Hash every cached file of the version against its manifest (fetched once more when
        the cached copy does not match); raise Corrupted listing the bad files.

        An exact ``name:vN`` read from S3 within ``revalidate_s`` is not read again (see the
        module's notes). One read longer ago is hashed while its record alone is read again,
        so the round trip hides behind the hashing; the hashes count only when the record
        names that same cached copy. Either way the version carries the aliases of the last
        read (`get` reads them afresh).
        """
        parsed = parse_ref(ref)
        known = self._read_at.get((parsed.name, parsed.version or 0))
        if known is not None and time.monotonic() - known[1] <= self._revalidate_s:
            if not _check_folder(known[0].path):
                return known[0]
            known = None  # damaged or evicted: read it all again
        if known is None:
            version = self.get(ref)
            problems = _check_folder(version.path)
        else:
            previous = known[0]
            early = self._hasher.submit(_check_folder, previous.path)
            try:
                with _storage_errors():  # the record alone; the aliases of the last read
                    version = self._version(previous.name, previous.version, previous.aliases)
            finally:
                hashed = early.result()
            problems = hashed if version.path == previous.path else _check_folder(version.path)
        if problems:
            logger.warning("cached %s is damaged (%s); fetching again", version.ref, problems)
            shutil.rmtree(version.path, ignore_errors=True)
            version = self.get(ref)
            problems = _check_folder(version.path)
        if problems:
            self._read_at.pop((version.name, version.version), None)
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
            self._require_model(name)
            return list(self._read_aliases(name)[0].history)

    def report_path(self, ref: str) -> Path | None:
        """The current report of a version, fetched into the local cache; None when none."""
        version = self.get(ref)
        with _storage_errors():
            return fetch_report(self._backend, self._cache, version.name, version.version)

    def read_document(self, file_name: str, *, name: str) -> Any | None:
        """A JSON document kept beside a model's versions (``cluster_names.json``), or None."""
        validate_name(name)
        with _storage_errors():
            try:
                stored = self._backend.read(f"{name}/{file_name}")
            except ObjectNotFound:
                return None
        return json.loads(stored.data)

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
            "published %s (sha256 %s) in %s", published.ref, published.sha256, self.describe()
        )

    def promote(self, ref: str, alias: str) -> ModelVersion:
        parsed = parse_ref(ref)
        validate_alias(alias)
        with _storage_errors():

            def move(table: AliasTable) -> int:
                number = self._resolve(parsed, table)
                table.move(alias, number, action="promote", at=now())
                return number

            number, table = self._update_aliases(parsed.name, move)
            logger.info("promoted %s:v%d to @%s", parsed.name, number, alias)
            return self._version(parsed.name, number, table.aliases_of(number))

    def rollback(self, name: str, alias: str) -> ModelVersion:
        validate_name(name)
        validate_alias(alias)
        with _storage_errors():
            self._require_model(name)

            def back(table: AliasTable) -> int:
                exists = lambda n: self._backend.exists(manifest_key(name, n))  # noqa: E731
                return table.roll_back(alias, exists=exists, at=now())

            number, table = self._update_aliases(name, back)
            logger.info("rolled %s@%s back to v%d", name, alias, number)
            return self._version(name, number, table.aliases_of(number))

    def remove_alias(self, name: str, alias: str) -> None:
        validate_name(name)
        validate_alias(alias)
        with _storage_errors():
            self._require_model(name)
            self._update_aliases(name, lambda table: table.remove(alias, at=now()))

    def delete(self, ref: str) -> None:
        """Delete a version (its record: it disappears at once); refused while aliased.

        Its reports go with it, and so do its blobs that no other version lists and that
        were written more than ``gc_grace_s`` ago (`collect_garbage` says why a grace).
        """
        _number, listed = self._delete(ref)
        with _storage_errors():
            collect_garbage(
                self._backend, parse_ref(ref).name, grace_s=self._gc_grace_s, only=listed
            )

    def _delete(self, ref: str) -> tuple[int, set[str]]:
        """Delete the record and reports; returns the number and the blobs it listed."""
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
                     "from_version": number, "at": now()}
                )  # fmt: skip
                return number

            # Writing the table (with the deletion in its history) makes a promote that
            # read it before lose its compare-and-swap and look again.
            number, _table = self._update_aliases(parsed.name, check_unaliased)
            self._read_at.pop((parsed.name, number), None)
            record_bytes = self._read_record(parsed.name, number)
            self._backend.delete(manifest_key(parsed.name, number))
            for key in self._backend.list_keys(reports_prefix(parsed.name, number)):
                self._backend.delete(key)
            logger.info("deleted %s:v%d", parsed.name, number)
        listed: set[str] = set()
        if record_bytes is not None:
            record = VersionRecord(f"{parsed.name}:v{number}", record_bytes)
            listed = {sha256 for sha256, _size in record.files.values()}
        return number, listed

    def collect_garbage(self, name: str, *, grace_s: float | None = None) -> list[str]:
        """Delete the blobs of ``name`` no version lists, written more than ``grace_s`` ago
        (default ``gc_grace_s``; a publish in progress on another host writes its blobs
        again just before its record, so a grace longer than any publish keeps them);
        returns their digests."""
        validate_name(name)
        grace = self._gc_grace_s if grace_s is None else grace_s
        if grace < 0:
            raise ValueError("grace_s must be >= 0")
        with _storage_errors():
            self._require_model(name)
            return collect_garbage(self._backend, name, grace_s=grace)

    def apply_retention(self, name: str, *, keep: int) -> list[int]:
        validate_name(name)
        if keep < 0:
            raise ValueError("keep must be >= 0")
        with _storage_errors():
            numbers = self._require_model(name)
            aliased = set(self._read_aliases(name)[0].targets.values())
            unaliased = [n for n in sorted(numbers, reverse=True) if n not in aliased]
            deleted = []
            freed: set[str] = set()
            for number in sorted(unaliased[keep:]):
                try:
                    freed |= self._delete(f"{name}:v{number}")[1]
                except (AliasConflict, NotFound):
                    continue  # promoted or deleted meanwhile by another host
                deleted.append(number)
            if freed:
                collect_garbage(self._backend, name, grace_s=self._gc_grace_s, only=freed)
            return deleted

    def write_report(self, ref: str, *, files: Mapping[str, bytes]) -> Path:
        """Replace the report of a version: upload under a new id, then move the pointer."""
        from model_store.store import _safe_report_path

        checked = {_safe_report_path(path): bytes(data) for path, data in files.items()}
        version = self.get(ref)
        with _storage_errors():
            replace_report(self._backend, version.name, version.version, checked)
        path = self.report_path(version.ref)
        assert path is not None
        return path

    def update_document(
        self, file_name: str, *, name: str, change: Callable[[Any | None], Any]
    ) -> Any:
        """Replace a JSON document beside a model's versions by compare-and-swap: ``change``
        gets the current document (None when none) and returns the new one."""
        validate_name(name)
        with _storage_errors():
            self._require_model(name)

            def apply(current: Any | None) -> tuple[Any, Any]:
                document = change(current)
                return document, document

            return update_json(self._backend, f"{name}/{file_name}", apply)

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

    # ------------------------------------------------------------------ internals

    def _require_model(self, name: str) -> list[int]:
        numbers = version_numbers(self._backend, name)
        if not numbers:
            raise NotFound(f"model {name!r} not found")
        return numbers

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
        source = f"{self.describe()}/{aliases_key(name)}"

        def apply(current: Any | None) -> tuple[tuple[_T, AliasTable], Any]:
            table = (
                AliasTable(name=name)
                if current is None
                else AliasTable.from_document(current, name=name, source=source)
            )
            result = change(table)
            return (result, table), table.document()

        return update_json(self._backend, aliases_key(name), apply)

    def _resolve(self, parsed: ModelRef, table: AliasTable, *, check: bool = True) -> int:
        """The version number ``parsed`` names; ``check``: and make sure it exists (a write
        about to point at it), else reading the version finds out."""
        if parsed.version is not None:
            number = parsed.version
        else:
            assert parsed.alias is not None
            if parsed.alias not in table.targets:
                self._require_model(parsed.name)
                raise NotFound(f"alias {parsed} is not set")
            number = table.targets[parsed.alias]
        if check and not self._backend.exists(manifest_key(parsed.name, number)):
            self._require_model(parsed.name)
            raise NotFound(f"{parsed.name}:v{number} not found")
        return number

    def _read_record(self, name: str, number: int) -> bytes | None:
        try:
            return self._backend.read(manifest_key(name, number)).data
        except ObjectNotFound:
            return None

    def _version(
        self, name: str, number: int, aliases: list[str], record_bytes: bytes | None = None
    ) -> ModelVersion:
        """The version, its files fetched into the cache (checked) when not there yet."""
        ref = f"{name}:v{number}"
        if record_bytes is None:
            record_bytes = self._read_record(name, number)
        if record_bytes is None:
            self._read_at.pop((name, number), None)
            raise NotFound(f"{ref} not found")
        record = VersionRecord(ref, record_bytes)
        path = materialise(self._backend, self._cache, name, record)
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
        version = ModelVersion(
            name=name,
            version=number,
            ref=ref,
            path=path,
            sha256=record.sha256,
            metadata=document["metadata"],
            created_at=str(document.get("created_at", "")),
            aliases=aliases,
        )
        self._read_at[(name, number)] = (version, time.monotonic())
        return version

    def _commit(self, name: str, staging: Path, metadata: dict[str, Any]) -> ModelVersion:
        entries = hash_staged_files(staging)
        store_files(self._backend, name, staging, entries)
        claimed = claim_version(self._backend, name, entries, metadata)
        record = VersionRecord(f"{name}:v{claimed.number}", claimed.record_bytes)
        seed_cache(self._cache, staging, record)
        number = claimed.number

        def move_latest(table: AliasTable) -> None:
            # Forward only: of two publishes finishing out of order, latest stays the higher.
            current = table.targets.get(LATEST_ALIAS)
            if current is None or current < number:
                table.move(LATEST_ALIAS, number, action="publish", at=claimed.created_at)

        _result, table = self._update_aliases(name, move_latest)
        return self._version(name, number, table.aliases_of(number), claimed.record_bytes)
