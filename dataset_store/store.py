"""Data sets on the shared volume: safe ingestion of uploaded archives, and their manifests.

Layout under the store root (``UVAC_DATASETS_DIR``)::

    ds_0123456789ab/
        manifest.json      id, created_at, files, rejected, labels, digest
        listing.json       id and created_at alone, so a listing parses only its page
        files/             the accepted recordings (and labels.csv when one was uploaded)
    .staging/              half-built data sets; renamed into place when complete
    .embeddings/           encoder embeddings of the recordings (`uvac.audio.EmbeddingCache`),
                           keyed by content, so they move with the data sets

A data set appears all at once (staging folder + rename) or not at all. Every accepted file
was decoded with `uvac.audio.decoding.load_audio`; files that are not audio or cannot be decoded are
deleted and listed under ``rejected`` with the reason, rather than failing the whole upload;
a rejected name is kept in a short, escaped form, only the first `MAX_SKIPPED_LISTED` are
listed (``rejected_count`` counts them all), and a manifest over `MAX_MANIFEST_BYTES` refuses
the upload, so what an archive costs to list stays near what it cost to send.
The ``digest`` is `uvac.audio.datasets.dataset_digest` of the files (path, label and content hash)
and labels, so the same recordings give the same digest whatever the id; a trained model
records it.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from dataset_store.archives import UnpackLimits, unpack_archive
from dataset_store.errors import ArchiveRejected, ArchiveTooLarge, DatasetNotFound
from dataset_store.unpacking import MAX_SKIPPED_LISTED, echoed_name
from uvac.audio import (
    LABELS_FILE,
    Audio,
    AudioFolder,
    DecodeSlots,
    DigestEntry,
    dataset_digest,
    load_audio,
)
from uvac.errors import AudioError, DatasetError
from uvac.hashing import file_sha256

__all__ = [
    "DatasetFile",
    "DatasetManifest",
    "DatasetStore",
    "IngestLimits",
    "RejectedFile",
    "new_dataset_id",
]

logger = logging.getLogger(__name__)

MEGABYTE = 1024 * 1024
MANIFEST_FILE = "manifest.json"
LISTING_FILE = "listing.json"
# The files list is bounded by max_files x MAX_ENTRY_PATH_BYTES already; this is the backstop
# for the whole document.
MAX_MANIFEST_BYTES = 32 * MEGABYTE
# A rejection's reason is cut to this many characters (decoder messages can be long).
_MAX_REASON_CHARS = 300
FILES_FOLDER = "files"
EMBEDDINGS_FOLDER = ".embeddings"
_DATASET_ID = re.compile(r"^ds_[0-9a-f]{12}$")


def new_dataset_id() -> str:
    """``"ds_"`` and 12 random hex digits."""
    return "ds_" + secrets.token_hex(6)


@dataclass(frozen=True)
class IngestLimits:
    """What one upload may unpack to, and how its recordings are decoded."""

    max_total_bytes: int = 2048 * MEGABYTE
    max_file_bytes: int = 256 * MEGABYTE
    max_files: int = 20_000
    max_audio_seconds: float | None = 600.0
    # What one recording may decode to (frames x channels at its own rate).
    max_audio_samples: int | None = 600 * 48_000 * 2
    # Shared with the process's other decoders, so ingestion adds no decode beyond the cap.
    decode_slots: DecodeSlots | None = field(default=None, compare=False)
    # Decoding rate used only to check every file and measure its duration.
    sample_rate: int = 16_000

    def unpack_limits(self) -> UnpackLimits:
        return UnpackLimits(
            max_total_bytes=self.max_total_bytes,
            max_file_bytes=self.max_file_bytes,
            max_files=self.max_files,
        )


@dataclass(frozen=True)
class DatasetFile:
    path: str  # relative to the data set's files/ folder, "/"-separated
    duration_s: float
    label: str | None
    sha256: str


@dataclass(frozen=True)
class RejectedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class DatasetManifest:
    """What a data set holds; JSON-able through `to_dict` / `from_dict`."""

    id: str
    created_at: str  # ISO 8601, UTC
    files: list[DatasetFile]
    rejected: list[RejectedFile]
    labels: list[str]
    digest: str
    source: str | None = None  # the uploaded file's name, for people
    total_duration_s: float = field(default=0.0)
    rejected_count: int | None = None  # all rejected entries; None in older manifests

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> DatasetManifest:
        return cls(
            id=document["id"],
            created_at=document["created_at"],
            files=[DatasetFile(**item) for item in document["files"]],
            rejected=[RejectedFile(**item) for item in document["rejected"]],
            labels=list(document["labels"]),
            digest=document["digest"],
            source=document.get("source"),
            total_duration_s=float(document.get("total_duration_s", 0.0)),
            rejected_count=document.get("rejected_count"),
        )


def manifest_digest(files: Iterable[DatasetFile], labels: Iterable[str]) -> str:
    """The data set's `uvac.audio.datasets.dataset_digest` (content, not the id or the date)."""
    return dataset_digest(
        (DigestEntry(path=item.path, label=item.label, sha256=item.sha256) for item in files),
        labels=labels,
    )


class DatasetStore:
    """Data sets under ``root``: ingest, get, list, delete."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def prepare(self) -> None:
        """Create the store's folders, so that a refused upload, which removes its own
        staging folder, leaves the disk exactly as it found it."""
        self._staging_root()

    # --- reading -----------------------------------------------------------------------

    @property
    def embeddings_path(self) -> Path:
        """The folder of the embedding cache every job reads embeddings through."""
        return self.root / EMBEDDINGS_FOLDER

    def path(self, dataset_id: str) -> Path:
        """The folder holding the data set's recordings (and its labels.csv, if any)."""
        return self._folder(dataset_id) / FILES_FOLDER

    def get(self, dataset_id: str) -> DatasetManifest:
        manifest_path = self._folder(dataset_id) / MANIFEST_FILE
        try:
            document = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise DatasetNotFound(f"No data set {dataset_id!r}.") from error
        return DatasetManifest.from_dict(document)

    def list(self, *, offset: int = 0, limit: int = 50) -> tuple[list[DatasetManifest], int]:
        """Data sets, newest first, and how many there are in all.

        Orders by each data set's small listing file and parses only the page's manifests.
        """
        entries = []
        if self.root.is_dir():
            for folder in self.root.iterdir():
                if _DATASET_ID.match(folder.name) and (folder / MANIFEST_FILE).is_file():
                    try:
                        entries.append((self._created_at(folder), folder.name))
                    except (DatasetNotFound, ValueError, KeyError):
                        logger.warning("skipping unreadable data set folder %s", folder)
        entries.sort(reverse=True)
        manifests = []
        for _, dataset_id in entries[offset : offset + limit]:
            try:
                manifests.append(self.get(dataset_id))
            except (DatasetNotFound, ValueError, KeyError):
                logger.warning("skipping unreadable data set %s", dataset_id)
        return manifests, len(entries)

    def _created_at(self, folder: Path) -> str:
        try:
            return str(json.loads((folder / LISTING_FILE).read_text("utf-8"))["created_at"])
        except FileNotFoundError:
            # A data set stored before listing files existed: read its manifest once and
            # leave the listing file for next time.
            manifest = self.get(folder.name)
            _write_listing(folder, manifest)
            return manifest.created_at

    def delete(self, dataset_id: str) -> None:
        folder = self._folder(dataset_id)
        if not folder.is_dir():
            raise DatasetNotFound(f"No data set {dataset_id!r}.")
        # Rename first, so readers see the data set vanish at once rather than file by file.
        trash = self._staging_root() / f"deleted-{dataset_id}-{uuid.uuid4().hex}"
        folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
        logger.info("deleted data set %s", dataset_id)

    # --- writing -----------------------------------------------------------------------

    def ingest_archive(
        self, stream: BinaryIO, *, filename: str, limits: IngestLimits | None = None
    ) -> DatasetManifest:
        """Unpack an uploaded zip or tar archive into a new data set.

        Raises `ArchiveRejected` (unsafe entries, no usable recording), `ArchiveTooLarge` or
        `UnsupportedArchive`; nothing is left behind then.
        """
        limits = limits or IngestLimits()
        with self._staging() as staging:
            files_root = staging / FILES_FOLDER
            files_root.mkdir()
            unpacked = unpack_archive(stream, destination=files_root, limits=limits.unpack_limits())
            _strip_single_top_folder(files_root)
            skipped = [
                RejectedFile(path=entry.name, reason=entry.reason) for entry in unpacked.skipped
            ]
            return self._finish(
                staging,
                source=filename,
                limits=limits,
                skipped=skipped,
                skipped_count=unpacked.skipped_count,
            )

    def register_folder(
        self, source: Path, *, limits: IngestLimits | None = None
    ) -> DatasetManifest:
        """Copy a local folder of recordings already on the server into a new data set.

        Symbolic links are skipped; the same checks and manifest as for an upload apply.
        """
        limits = limits or IngestLimits()
        source = Path(source)
        if not source.is_dir():
            raise DatasetNotFound(f"{source} is not a folder.")
        with self._staging() as staging:
            files_root = staging / FILES_FOLDER
            copied = 0
            for path in sorted(source.rglob("*")):
                if path.is_symlink() or not path.is_file():
                    continue
                copied += 1
                if copied > limits.max_files:
                    raise ArchiveRejected(f"{source} holds more than {limits.max_files} files.")
                target = files_root / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            files_root.mkdir(exist_ok=True)
            return self._finish(staging, source=str(source), limits=limits)

    # --- internals ---------------------------------------------------------------------

    def _place(self, staging: Path, dataset_id: str) -> None:
        """Make the finished data set (``staging``: files/ and manifest.json) visible."""
        staging.rename(self.root / dataset_id)

    def _folder(self, dataset_id: str) -> Path:
        # The id reaches us from a URL: only the exact format may become a path.
        if not _DATASET_ID.match(dataset_id):
            raise DatasetNotFound(f"No data set {dataset_id!r}.")
        return self.root / dataset_id

    def _staging_root(self) -> Path:
        staging_root = self.root / ".staging"
        staging_root.mkdir(parents=True, exist_ok=True)
        return staging_root

    def _staging(self) -> _StagingFolder:
        return _StagingFolder(self._staging_root() / uuid.uuid4().hex)

    def _finish(
        self,
        staging: Path,
        *,
        source: str,
        limits: IngestLimits,
        skipped: Iterable[RejectedFile] = (),
        skipped_count: int = 0,
    ) -> DatasetManifest:
        files_root = staging / FILES_FOLDER
        decoded: list[tuple[str, float, str]] = []  # (relative path, duration, sha256)
        listed = list(skipped)
        rejected = _Rejections(listed, count=max(skipped_count, len(listed)))
        for path in sorted(p for p in files_root.rglob("*") if p.is_file()):
            relative = path.relative_to(files_root).as_posix()
            if relative == LABELS_FILE:
                continue
            if any(_is_hidden(part) for part in PurePosixPath(relative).parts):
                # The engine's folder scan skips hidden files and folders (.DS_Store,
                # __MACOSX, AppleDouble ._x.wav); keeping them would make the two disagree.
                rejected.add(relative, "hidden file")
                path.unlink()
                continue
            try:
                audio = _decode(path, limits=limits)
            except AudioError as error:
                rejected.add(relative, f"{error.title}: {error}")
                path.unlink()
                continue
            decoded.append((relative, round(audio.duration_s, 6), file_sha256(path)))
        if not decoded:
            reasons = "; ".join(f"{item.path}: {item.reason}" for item in rejected.listed[:5])
            raise ArchiveRejected(
                "The archive holds no decodable audio file"
                + (f" ({rejected.count} rejected: {reasons})." if rejected.count else ".")
            )
        labels_by_path = _engine_labels(files_root, [relative for relative, _, _ in decoded])
        accepted = [
            DatasetFile(
                path=relative, duration_s=duration, label=labels_by_path.get(relative), sha256=sha
            )
            for relative, duration, sha in decoded
        ]
        labels = sorted({item.label for item in accepted if item.label is not None})
        dataset_id = new_dataset_id()
        manifest = DatasetManifest(
            id=dataset_id,
            created_at=datetime.now(UTC).isoformat(),
            files=accepted,
            rejected=rejected.listed,
            rejected_count=rejected.count,
            labels=labels,
            digest=manifest_digest(accepted, labels),
            source=source,
            total_duration_s=round(sum(item.duration_s for item in accepted), 6),
        )
        document = json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False)
        if len(document) > MAX_MANIFEST_BYTES:  # characters: at most the bytes, often equal
            raise ArchiveTooLarge(
                f"The data set's manifest would be larger than {MAX_MANIFEST_BYTES} bytes; "
                "send fewer files or shorter names."
            )
        (staging / MANIFEST_FILE).write_text(document, encoding="utf-8")
        _write_listing(staging, manifest)
        self._place(staging, dataset_id)
        logger.info(
            "data set %s: %d files accepted, %d rejected, digest %s",
            dataset_id,
            len(accepted),
            rejected.count,
            manifest.digest[:12],
        )
        return manifest


class _Rejections:
    """Rejected entries: the first `MAX_SKIPPED_LISTED` listed (name and reason cut short),
    all counted."""

    def __init__(self, listed: list[RejectedFile], *, count: int) -> None:
        self.listed = listed[:MAX_SKIPPED_LISTED]
        self.count = count

    def add(self, path: str, reason: str) -> None:
        self.count += 1
        if len(self.listed) < MAX_SKIPPED_LISTED:
            self.listed.append(
                RejectedFile(
                    path=echoed_name(path), reason=echoed_name(reason, limit=_MAX_REASON_CHARS)
                )
            )


def _write_listing(folder: Path, manifest: DatasetManifest) -> None:
    listing = {"id": manifest.id, "created_at": manifest.created_at}
    (folder / LISTING_FILE).write_text(json.dumps(listing), encoding="utf-8")


class _StagingFolder:
    """A fresh staging folder, removed on exit unless it was renamed into place."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Path:
        self.path.mkdir(parents=True)
        return self.path

    def __exit__(self, *exc_info: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _decode(path: Path, *, limits: IngestLimits) -> Audio:
    decode = partial(
        load_audio,
        path,
        sample_rate=limits.sample_rate,
        max_seconds=limits.max_audio_seconds,
        max_samples=limits.max_audio_samples,
    )
    return limits.decode_slots.call(decode) if limits.decode_slots else decode()


def _strip_single_top_folder(files_root: Path) -> None:
    """Archives often wrap everything in one folder ("mydata/..."); lift its content up."""
    entries = list(files_root.iterdir())
    if len(entries) != 1 or not entries[0].is_dir():
        return
    wrapper = entries[0].rename(files_root.parent / f"wrapper-{uuid.uuid4().hex}")
    for child in wrapper.iterdir():
        child.rename(files_root / child.name)
    wrapper.rmdir()


def _engine_labels(files_root: Path, relpaths: list[str]) -> dict[str, str]:
    """Labels by the engine's rules (labels.csv, else folders, else file-name prefixes), so a
    data set is labelled the same whether it was uploaded or scanned by the CLI."""
    extensions = sorted({PurePosixPath(relpath).suffix.lower() for relpath in relpaths})
    try:
        folder = AudioFolder.scan(files_root, extensions=extensions)
    except DatasetError as error:
        raise ArchiveRejected(str(error)) from error
    return {item.relpath: item.label for item in folder.items if item.label is not None}


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"
