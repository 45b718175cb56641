"""ModelStore: immutable, versioned models on a shared volume.

Layout (one volume; every rename stays on one file system)::

    <root>/.staging/<uuid>/               temporaries: publishes in progress, trash
    <root>/<name>/.lock                   per-model write lock (see locking.py)
    <root>/<name>/aliases.json            alias targets, rollback stacks, history
    <root>/<name>/versions/v<N>/          one immutable version:
        weights.safetensors, model.json   (written by the caller, e.g. uvac.training.artifact)
        metadata.json                     {"format", "name", "version", "ref",
                                           "created_at", "metadata": <caller's document>}
        MANIFEST.json                     SHA-256 and size of every file the caller wrote,
                                          SHA-256 of the caller's metadata (the identity:
                                          nothing of when or where it was published)
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

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_store.aliases import MAX_ALIASES_PER_MODEL, AliasTable
from model_store.errors import AliasConflict, AlreadyExists, Corrupted, NotFound
from model_store.fsutil import fsync_dir, remove_tree, rename_no_replace, write_bytes_durably
from model_store.layout import DEFAULT_STALE_STAGING_S, StoreLayout
from model_store.locking import model_lock
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
    read_version,
    seal_version,
    verify_version,
)

__all__ = ["MAX_ALIASES_PER_MODEL", "METADATA_NAME", "ModelStore"]

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000

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
        self._layout = StoreLayout(self._root)
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
            numbers = self._layout.version_numbers(entry.name)
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
        if not self._layout.model_dir(name).is_dir():
            raise NotFound(f"model {name!r} not found")
        numbers = sorted(self._layout.version_numbers(name), reverse=True)
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
            problems = verify_version(version, manifest)
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
        path = self._layout.report_dir(version.name, version.version)
        return path if path.is_dir() else None

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """The audit log of alias moves of one model, oldest first."""
        validate_name(name)
        if not self._layout.model_dir(name).is_dir():
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
        document = json_document(metadata)
        staging = StagingPath(self._layout.new_staging_dir())
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
            table.save(self._layout.aliases_path(parsed.name))
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
                exists=lambda candidate: self._layout.version_dir(name, candidate).is_dir(),
                at=_now(),
            )
            table.save(self._layout.aliases_path(name))
            logger.info("rolled %s@%s back to v%d", name, alias, number)
            return self._load(name, number, table)[0]

    def remove_alias(self, name: str, alias: str) -> None:
        """Unset ``name@alias`` (so its version can be deleted); the history keeps the move."""
        validate_name(name)
        validate_alias(alias)
        with self._lock(name):
            table = self._aliases(name)
            table.remove(alias, at=_now())
            table.save(self._layout.aliases_path(name))

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
        if not self._layout.model_dir(name).is_dir():
            raise NotFound(f"model {name!r} not found")
        with self._lock(name):
            table = self._aliases(name)
            aliased = set(table.targets.values())
            unaliased = [
                number
                for number in sorted(self._layout.version_numbers(name), reverse=True)
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
        staging = self._layout.new_staging_dir()
        try:
            for relative, data in relative_paths.items():
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_durably(target, bytes(data))
            for folder in sorted({p.parent for p in (staging / r for r in relative_paths)}):
                fsync_dir(folder)
            with self._lock(version.name):
                if not self._layout.version_dir(version.name, version.version).is_dir():
                    raise NotFound(f"{version.ref} was deleted while its report was written")
                reports_dir = self._layout.reports_dir(version.name)
                reports_dir.mkdir(parents=True, exist_ok=True)
                destination = self._layout.report_dir(version.name, version.version)
                if destination.exists():
                    self._layout.discard(destination)
                rename_no_replace(staging, destination)
                fsync_dir(reports_dir)
        except BaseException:
            with suppress(OSError):
                remove_tree(staging)
            raise
        return destination

    def cleanup_staging(self, *, max_age_s: float = DEFAULT_STALE_STAGING_S) -> int:
        """Remove temporaries left by killed writers (`StoreLayout.cleanup_staging`)."""
        return self._layout.cleanup_staging(max_age_s=max_age_s)

    # ------------------------------------------------------------------ internals

    def _aliases(self, name: str) -> AliasTable:
        return AliasTable.load(self._layout.aliases_path(name), name=name)

    def _lock(self, name: str, *, create: bool = False) -> Any:
        """The model's write lock. Only publishing creates a model: any other write on a model
        that does not exist is refused before anything (its folder, its lock file) is made."""
        if not create and not self._layout.model_dir(name).is_dir():
            raise NotFound(f"model {name!r} not found")
        return model_lock(
            self._layout.model_dir(name), timeout_s=self._lock_timeout_s, create=create
        )

    def _resolve(self, parsed: ModelRef, table: AliasTable) -> int:
        if not self._layout.model_dir(parsed.name).is_dir():
            raise NotFound(f"model {parsed.name!r} not found")
        if parsed.version is not None:
            number = parsed.version
        else:
            assert parsed.alias is not None
            if parsed.alias not in table.targets:
                raise NotFound(f"alias {parsed} is not set")
            number = table.targets[parsed.alias]
        if not self._layout.version_dir(parsed.name, number).is_dir():
            raise NotFound(f"{parsed.name}:v{number} not found")
        return number

    def _load(self, name: str, number: int, table: AliasTable) -> tuple[ModelVersion, Any]:
        """Build the ModelVersion of an existing folder; returns its parsed manifest too."""
        return read_version(
            self._layout.version_dir(name, number),
            name=name,
            number=number,
            aliases=table.aliases_of(number),
        )

    def _commit(self, name: str, staging: Path, metadata: dict[str, Any]) -> ModelVersion:
        entries = hash_staged_files(staging)  # outside the lock: large weight files are slow
        layout = self._layout
        with self._lock(name, create=True):
            versions_dir = layout.versions_dir(name)
            versions_dir.mkdir(parents=True, exist_ok=True)
            number = layout.next_version_number(name)
            created_at = _now()
            seal_version(
                staging, entries, name=name, number=number, created_at=created_at,
                metadata=metadata,
            )  # fmt: skip
            try:
                rename_no_replace(staging, layout.version_dir(name, number))
            except FileExistsError as error:
                raise AlreadyExists(f"{name}:v{number} already exists") from error
            fsync_dir(versions_dir)
            fsync_dir(staging.parent)
            table = self._aliases(name)
            table.move(LATEST_ALIAS, number, action="publish", at=created_at)
            table.save(layout.aliases_path(name))
            return self._load(name, number, table)[0]

    def _remove_version(self, name: str, number: int) -> None:
        """Make a version disappear atomically, then delete its bytes; call under the lock."""
        self._layout.discard(self._layout.version_dir(name, number))
        report = self._layout.report_dir(name, number)
        if report.exists():
            self._layout.discard(report)
        logger.info("deleted %s:v%d", name, number)


def _safe_report_path(relative: str) -> str:
    parts = relative.split("/")
    if not parts or any(_REPORT_PART_RE.fullmatch(part) is None for part in parts):
        raise ValueError(f"invalid report file name {relative!r}")
    return relative
