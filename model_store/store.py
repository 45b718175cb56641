"""ModelStore: immutable, versioned models on a shared volume.

Layout (one volume; every rename stays on one file system)::

    <root>/.staging/<uuid>/               temporaries: publishes in progress, trash
    <root>/<name>/.lock                   per-model write lock (see locking.py)
    <root>/<name>/aliases.json            alias targets, rollback stacks, history
    <root>/<name>/versions/v<N>/          one immutable version:
        weights.safetensors, model.json   (written by the caller, e.g. uvac.artifact)
        metadata.json                     {"format", "name", "version", "ref",
                                           "created_at", "metadata": <caller's document>}
        MANIFEST.json                     SHA-256 and size of every other file
    <root>/<name>/reports/v<N>/           mutable report area of version N (report.json,
                                          figures...), replaced as a whole by write_report

A version never changes after publish; what is learnt about it later (an evaluation) goes
to its report area. The immutable version plus its report area is the unit: deleting a
version deletes its report too.

Publishing writes into ``.staging/<uuid>``, hashes and fsyncs every file, then under the
model's lock allocates ``max(existing) + 1``, writes metadata.json and MANIFEST.json and
renames the folder into ``versions/`` with a rename that refuses an existing target. A
reader therefore sees a whole version or none; a writer killed at any point leaves at most
a folder under ``.staging``, removed by ``cleanup_staging`` (also run when a store opens).

The store reads JSON only; weight files are hashed as bytes, never parsed or unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_store.aliases import ALIASES_FILE_NAME, AliasTable
from model_store.errors import AliasConflict, AlreadyExists, Corrupted, NotFound, StoreError
from model_store.fsutil import (
    canonical_json,
    fsync_dir,
    read_json,
    remove_tree,
    rename_no_replace,
    write_bytes_durably,
)
from model_store.locking import model_lock
from model_store.manifest import (
    MANIFEST_NAME,
    FileEntry,
    hash_file,
    manifest_document,
    scan_tree,
    verify_tree,
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

__all__ = ["METADATA_NAME", "ModelStore"]

logger = logging.getLogger(__name__)

METADATA_NAME = "metadata.json"
METADATA_FORMAT = 1
STAGING_DIR_NAME = ".staging"
VERSIONS_DIR_NAME = "versions"
REPORTS_DIR_NAME = "reports"
DEFAULT_STALE_STAGING_S = 3600.0
MAX_PAGE_SIZE = 1000

_VERSION_DIR_RE = re.compile(r"v([1-9][0-9]*)")
_NAME_RE = re.compile(NAME_PATTERN)
_REPORT_PART_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ModelStore:
    """Versioned model store rooted at ``root`` (see the module docstring for the layout).

    ``lock_timeout_s`` bounds how long a writer waits for another writer of the same model
    (StoreBusy after that). ``stale_staging_after_s`` (None to skip) removes temporaries
    left by killed writers when the store opens.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        lock_timeout_s: float = 60.0,
        stale_staging_after_s: float | None = DEFAULT_STALE_STAGING_S,
    ) -> None:
        self._root = Path(root)
        self._lock_timeout_s = lock_timeout_s
        if stale_staging_after_s is not None:
            try:
                self.cleanup_staging(max_age_s=stale_staging_after_s)
            except OSError as error:  # a read-only mount must still be able to serve
                logger.warning("could not clean up staging under %s: %s", self._root, error)

    @property
    def root(self) -> Path:
        return self._root

    # ------------------------------------------------------------------ reading

    def list_models(self) -> list[ModelSummary]:
        """Every model with at least one version, sorted by name."""
        if not self._root.is_dir():
            return []
        summaries = []
        for entry in sorted(self._root.iterdir()):
            if _NAME_RE.fullmatch(entry.name) is None or not entry.is_dir():
                continue
            numbers = self._version_numbers(entry.name)
            if not numbers:
                continue
            table = self._aliases(entry.name)
            summaries.append(
                ModelSummary(
                    name=entry.name,
                    latest_version=numbers[-1],
                    version_count=len(numbers),
                    aliases=dict(sorted(table.targets.items())),
                )
            )
        return summaries

    def list_versions(
        self, name: str, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[ModelVersion], int]:
        """One page of a model's versions, newest first, and the total number of versions."""
        validate_name(name)
        if offset < 0 or not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"need offset >= 0 and 1 <= limit <= {MAX_PAGE_SIZE}")
        if not self._model_dir(name).is_dir():
            raise NotFound(f"model {name!r} not found")
        numbers = sorted(self._version_numbers(name), reverse=True)
        table = self._aliases(name)
        page = [self._load(name, number, table)[0] for number in numbers[offset : offset + limit]]
        return page, len(numbers)

    def get(self, ref: str) -> ModelVersion:
        """Resolve ``name``, ``name:vN`` or ``name@alias`` (``name`` means ``name@latest``).

        Reads metadata and the manifest digest only; use ``load_verified`` before loading
        weights.
        """
        parsed = parse_ref(ref)
        table = self._aliases(parsed.name)
        number = self._resolve(parsed, table)
        return self._load(parsed.name, number, table)[0]

    def verify(self, ref: str) -> ModelVersion:
        """Recompute every checksum of the version; raise Corrupted listing the bad files."""
        parsed = parse_ref(ref)
        table = self._aliases(parsed.name)
        number = self._resolve(parsed, table)
        version, manifest = self._load(parsed.name, number, table)
        try:
            problems = verify_tree(version.path, manifest)
        except FileNotFoundError:
            problems = {"?": "vanished while hashing"}
        if problems and not version.path.is_dir():
            # Deleted by a writer while we hashed it: gone, not corrupted.
            raise NotFound(f"{version.ref} was deleted while being verified")
        if problems:
            listing = ", ".join(f"{path} ({problem})" for path, problem in problems.items())
            logger.warning("%s failed verification: %s", version.ref, listing)
            raise Corrupted(
                f"{version.ref} does not match its manifest: {listing}",
                ref=version.ref,
                bad_files=list(problems),
            )
        return version

    def load_verified(self, ref: str) -> ModelVersion:
        """``get`` plus ``verify``: the version to load weights from, every byte checked."""
        return self.verify(ref)

    def report_path(self, ref: str) -> Path | None:
        """The report folder of a version, or None when nothing was reported yet."""
        version = self.get(ref)
        path = self._reports_dir(version.name) / f"v{version.version}"
        return path if path.is_dir() else None

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """The audit log of alias moves of one model, oldest first."""
        validate_name(name)
        if not self._model_dir(name).is_dir():
            raise NotFound(f"model {name!r} not found")
        return list(self._aliases(name).history)

    # ------------------------------------------------------------------ writing

    @contextmanager
    def publish(self, name: str, *, metadata: Mapping[str, Any]) -> Iterator[StagingPath]:
        """Yield an empty staging folder; on clean exit publish it as ``name:v<next>``.

        The caller writes its files (weights.safetensors, model.json, ...) into the folder;
        ``metadata.json`` and ``MANIFEST.json`` are reserved. After the block,
        ``staging.version`` is the published ModelVersion and ``name@latest`` points at it.
        If the block raises, nothing is published and the folder is removed.
        """
        validate_name(name)
        document = _json_document(metadata)
        staging = StagingPath(self._new_staging_dir())
        try:
            yield staging
            published = self._commit(name, Path(staging), document)
        except BaseException:
            with suppress(OSError):
                remove_tree(Path(staging))
            raise
        staging._set_published(published)
        logger.info("published %s (sha256 %s)", published.ref, published.sha256)

    def promote(self, ref: str, alias: str) -> ModelVersion:
        """Point ``name@alias`` at the version ``ref`` resolves to (history is kept)."""
        parsed = parse_ref(ref)
        validate_alias(alias)
        with self._lock(parsed.name):
            table = self._aliases(parsed.name)
            number = self._resolve(parsed, table)
            table.move(alias, number, action="promote", at=_now())
            table.save(self._aliases_path(parsed.name))
            logger.info("promoted %s:v%d to @%s", parsed.name, number, alias)
            return self._load(parsed.name, number, table)[0]

    def rollback(self, name: str, alias: str) -> ModelVersion:
        """Move ``name@alias`` back to its previous distinct target that still exists."""
        validate_name(name)
        validate_alias(alias)
        with self._lock(name):
            table = self._aliases(name)
            number = table.roll_back(
                alias,
                exists=lambda candidate: self._version_dir(name, candidate).is_dir(),
                at=_now(),
            )
            table.save(self._aliases_path(name))
            logger.info("rolled %s@%s back to v%d", name, alias, number)
            return self._load(name, number, table)[0]

    def remove_alias(self, name: str, alias: str) -> None:
        """Unset ``name@alias`` (so its version can be deleted); the history keeps the move."""
        validate_name(name)
        validate_alias(alias)
        with self._lock(name):
            table = self._aliases(name)
            table.remove(alias, at=_now())
            table.save(self._aliases_path(name))

    def delete(self, ref: str) -> None:
        """Delete one version and its report area; refused while an alias points at it."""
        parsed = parse_ref(ref)
        with self._lock(parsed.name):
            table = self._aliases(parsed.name)
            number = self._resolve(parsed, table)
            pointing = table.aliases_of(number)
            if pointing:
                raise AliasConflict(
                    f"{parsed.name}:v{number} is the target of "
                    + ", ".join(f"@{alias}" for alias in pointing)
                    + "; promote, roll back or remove those aliases first"
                )
            self._remove_version(parsed.name, number)

    def apply_retention(self, name: str, *, keep: int) -> list[int]:
        """Keep the newest ``keep`` versions no alias points at; delete older unaliased ones.

        Aliased versions are never deleted (nor counted). Returns the deleted numbers.
        """
        validate_name(name)
        if keep < 0:
            raise ValueError("keep must be >= 0")
        if not self._model_dir(name).is_dir():
            raise NotFound(f"model {name!r} not found")
        with self._lock(name):
            table = self._aliases(name)
            aliased = set(table.targets.values())
            unaliased = [
                number
                for number in sorted(self._version_numbers(name), reverse=True)
                if number not in aliased
            ]
            doomed = sorted(unaliased[keep:])
            for number in doomed:
                self._remove_version(name, number)
        if doomed:
            logger.info("retention on %s kept %d, deleted %s", name, keep, doomed)
        return doomed

    def write_report(self, ref: str, *, files: Mapping[str, bytes]) -> Path:
        """Replace the report area of a version with ``files`` ({relative path: bytes}).

        Versions are immutable; a report computed after publishing (metrics in
        ``report.json``, figures, HTML) lives beside the version and is swapped in whole.
        """
        relative_paths = {_safe_report_path(path): data for path, data in files.items()}
        version = self.get(ref)
        staging = self._new_staging_dir()
        try:
            for relative, data in relative_paths.items():
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_durably(target, bytes(data))
            for folder in sorted({p.parent for p in (staging / r for r in relative_paths)}):
                fsync_dir(folder)
            with self._lock(version.name):
                if not self._version_dir(version.name, version.version).is_dir():
                    raise NotFound(f"{version.ref} was deleted while its report was written")
                reports_dir = self._reports_dir(version.name)
                reports_dir.mkdir(parents=True, exist_ok=True)
                destination = reports_dir / f"v{version.version}"
                if destination.exists():
                    self._discard(destination)
                rename_no_replace(staging, destination)
                fsync_dir(reports_dir)
        except BaseException:
            with suppress(OSError):
                remove_tree(staging)
            raise
        return destination

    def cleanup_staging(self, *, max_age_s: float = DEFAULT_STALE_STAGING_S) -> int:
        """Remove temporaries under ``.staging`` untouched for ``max_age_s``; return how many.

        Leftovers come from writers killed mid-publish. An active publish touches its folder
        as it writes, so only truly abandoned ones reach the age limit.
        """
        staging_root = self._root / STAGING_DIR_NAME
        if not staging_root.is_dir():
            return 0
        removed = 0
        deadline = time.time() - max_age_s
        for entry in staging_root.iterdir():
            try:
                if entry.lstat().st_mtime > deadline:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    remove_tree(entry)
                else:
                    entry.unlink(missing_ok=True)
            except FileNotFoundError:
                continue
            removed += 1
        if removed:
            logger.info("removed %d stale staging entries under %s", removed, staging_root)
        return removed

    # ------------------------------------------------------------------ internals

    def _model_dir(self, name: str) -> Path:
        return self._root / name

    def _versions_dir(self, name: str) -> Path:
        return self._root / name / VERSIONS_DIR_NAME

    def _version_dir(self, name: str, number: int) -> Path:
        return self._versions_dir(name) / f"v{number}"

    def _reports_dir(self, name: str) -> Path:
        return self._root / name / REPORTS_DIR_NAME

    def _aliases_path(self, name: str) -> Path:
        return self._root / name / ALIASES_FILE_NAME

    def _aliases(self, name: str) -> AliasTable:
        return AliasTable.load(self._aliases_path(name), name=name)

    def _lock(self, name: str, *, create: bool = False) -> Any:
        """The model's write lock. Only publishing creates a model: any other write on a model
        that does not exist is refused before anything (its folder, its lock file) is made."""
        if not create and not self._model_dir(name).is_dir():
            raise NotFound(f"model {name!r} not found")
        return model_lock(self._model_dir(name), timeout_s=self._lock_timeout_s, create=create)

    def _new_staging_dir(self) -> Path:
        staging_root = self._root / STAGING_DIR_NAME
        staging_root.mkdir(parents=True, exist_ok=True)
        path = staging_root / uuid.uuid4().hex
        path.mkdir()
        return path

    def _version_numbers(self, name: str) -> list[int]:
        """Published versions (folders named vN), ascending."""
        versions_dir = self._versions_dir(name)
        if not versions_dir.is_dir():
            return []
        numbers = []
        for entry in versions_dir.iterdir():
            match = _VERSION_DIR_RE.fullmatch(entry.name)
            if match is not None and entry.is_dir():
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def _next_version_number(self, name: str) -> int:
        """max(any vN entry, even a stray empty one) + 1; call under the lock."""
        taken = [
            int(match.group(1))
            for entry in os.listdir(self._versions_dir(name))
            if (match := _VERSION_DIR_RE.fullmatch(entry)) is not None
        ]
        return max(taken, default=0) + 1

    def _resolve(self, parsed: ModelRef, table: AliasTable) -> int:
        if not self._model_dir(parsed.name).is_dir():
            raise NotFound(f"model {parsed.name!r} not found")
        if parsed.version is not None:
            number = parsed.version
        else:
            assert parsed.alias is not None
            if parsed.alias not in table.targets:
                raise NotFound(f"alias {parsed} is not set")
            number = table.targets[parsed.alias]
        if not self._version_dir(parsed.name, number).is_dir():
            raise NotFound(f"{parsed.name}:v{number} not found")
        return number

    def _load(self, name: str, number: int, table: AliasTable) -> tuple[ModelVersion, Any]:
        """Build the ModelVersion of an existing folder; returns its parsed manifest too."""
        path = self._version_dir(name, number)
        ref = f"{name}:v{number}"
        try:
            manifest_bytes = (path / MANIFEST_NAME).read_bytes()
            manifest = json.loads(manifest_bytes.decode("utf-8"))
            document = read_json(path / METADATA_NAME)
        except FileNotFoundError as error:
            if not path.is_dir():
                raise NotFound(f"{ref} not found") from error
            raise Corrupted(
                f"{ref} lacks {Path(error.filename).name}",
                ref=ref,
                bad_files=[Path(error.filename).name],
            ) from error
        except (OSError, ValueError) as error:
            raise Corrupted(
                f"{ref} has an unreadable manifest or metadata: {error}", ref=ref
            ) from error
        if (
            not isinstance(document, dict)
            or document.get("name") != name
            or document.get("version") != number
            or not isinstance(document.get("metadata"), dict)
        ):
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
            sha256=hashlib.sha256(manifest_bytes).hexdigest(),
            metadata=document["metadata"],
            created_at=str(document.get("created_at", "")),
            aliases=table.aliases_of(number),
        )
        return version, manifest

    def _commit(self, name: str, staging: Path, metadata: dict[str, Any]) -> ModelVersion:
        files, folders, others = scan_tree(staging)
        if others:
            raise StoreError(f"publish refused: only regular files may be published, not {others}")
        reserved = sorted({METADATA_NAME, MANIFEST_NAME} & set(files))
        if reserved:
            raise StoreError(f"publish refused: {reserved} are written by the store")
        # Hash and flush outside the lock: this is the slow part (large weight files).
        entries = {relative: hash_file(staging / relative, fsync=True) for relative in files}
        for folder in folders:
            fsync_dir(staging / folder)
        with self._lock(name, create=True):
            versions_dir = self._versions_dir(name)
            versions_dir.mkdir(parents=True, exist_ok=True)
            number = self._next_version_number(name)
            created_at = _now()
            document = {
                "format": METADATA_FORMAT,
                "name": name,
                "version": number,
                "ref": f"{name}:v{number}",
                "created_at": created_at,
                "metadata": metadata,
            }
            metadata_bytes = canonical_json(document)
            write_bytes_durably(staging / METADATA_NAME, metadata_bytes)
            entries[METADATA_NAME] = FileEntry(
                sha256=hashlib.sha256(metadata_bytes).hexdigest(), size=len(metadata_bytes)
            )
            write_bytes_durably(staging / MANIFEST_NAME, canonical_json(manifest_document(entries)))
            fsync_dir(staging)
            target = self._version_dir(name, number)
            try:
                rename_no_replace(staging, target)
            except FileExistsError as error:
                raise AlreadyExists(f"{name}:v{number} already exists") from error
            fsync_dir(versions_dir)
            fsync_dir(staging.parent)
            table = self._aliases(name)
            table.move(LATEST_ALIAS, number, action="publish", at=created_at)
            table.save(self._aliases_path(name))
            return self._load(name, number, table)[0]

    def _remove_version(self, name: str, number: int) -> None:
        """Make a version disappear atomically, then delete its bytes; call under the lock."""
        self._discard(self._version_dir(name, number))
        report = self._reports_dir(name) / f"v{number}"
        if report.exists():
            self._discard(report)
        logger.info("deleted %s:v%d", name, number)

    def _discard(self, path: Path) -> None:
        # Rename into .staging first, so readers never see a half-deleted folder.
        trash = self._root / STAGING_DIR_NAME / f"trash-{uuid.uuid4().hex}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, trash)
        fsync_dir(path.parent)
        remove_tree(trash)


def _json_document(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A deep JSON copy of ``metadata``; refuses what JSON cannot represent (NaN, objects)."""
    try:
        document = json.loads(json.dumps(dict(metadata), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"metadata must be a JSON document: {error}") from error
    return document


def _safe_report_path(relative: str) -> str:
    parts = relative.split("/")
    if not parts or any(_REPORT_PART_RE.fullmatch(part) is None for part in parts):
        raise ValueError(f"invalid report file name {relative!r}")
    return relative
