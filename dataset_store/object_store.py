"""Data sets in an object store (S3), stored as on disk: the same files, digest and manifest.

::

    <id>/files/<relative path>   every accepted recording (and labels.csv), create-only
    <id>/manifest.json           written last, create-only: the data set exists when it does

An upload is unpacked, decoded and checked in a local staging folder exactly as for the
folder store (`DatasetStore`), then uploaded file by file with the manifest last, so a data
set a reader can see is complete. A worker on any host reads a data set through `path`: the
recordings are downloaded once per host into a `ContentCache` entry keyed by the data set's
content digest, each file checked against the SHA-256 in the manifest as it arrives.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dataset_store.errors import DatasetNotFound, DatasetStoreError
from dataset_store.store import FILES_FOLDER, MANIFEST_FILE, DatasetManifest, DatasetStore
from object_storage import (
    ContentCache,
    ObjectBackend,
    ObjectNotFound,
    StorageAccessDenied,
    StorageUnavailable,
)
from uvac.audio import LABELS_FILE
from uvac.hashing import file_sha256

__all__ = ["DatasetStorageUnavailable", "ObjectDatasetStore"]

logger = logging.getLogger(__name__)

_DATASET_ID = re.compile(r"^ds_[0-9a-f]{12}$")


class DatasetStorageUnavailable(DatasetStoreError):
    """The object store holding the data sets did not answer or refused the credentials."""

    status = 503
    slug = "dataset-storage-unavailable"
    title = "Data set storage unavailable"


class ObjectDatasetStore(DatasetStore):
    """Data sets in ``backend``; ``work_root`` is a local folder for uploads being checked."""

    def __init__(self, backend: ObjectBackend, *, cache: ContentCache, work_root: Path) -> None:
        super().__init__(work_root)
        self._backend = backend
        self._cache = cache

    @property
    def backend(self) -> ObjectBackend:
        return self._backend

    def path(self, dataset_id: str) -> Path:
        """The recordings' folder on this host (fetched and checked on first use)."""
        manifest = self.get(dataset_id)
        with _storage_errors():
            has_labels = self._backend.exists(f"{dataset_id}/{FILES_FOLDER}/{LABELS_FILE}")

        def fill(folder: Path) -> None:
            for item in manifest.files:
                target = folder / item.path
                target.parent.mkdir(parents=True, exist_ok=True)
                self._backend.download(f"{dataset_id}/{FILES_FOLDER}/{item.path}", target)
                if file_sha256(target) != item.sha256:
                    raise DatasetStoreError(
                        f"{dataset_id}: {item.path} does not match its SHA-256 in the manifest"
                    )
            if has_labels:
                key = f"{dataset_id}/{FILES_FOLDER}/{LABELS_FILE}"
                self._backend.download(key, folder / LABELS_FILE)

        # Keyed by the content digest with the labels file's presence: two uploads of the
        # same recordings share one copy per host.
        digest = manifest.digest + ("1" if has_labels else "0")
        with _storage_errors():
            path, _cached = self._cache.entry(digest, fill)
        return path

    def get(self, dataset_id: str) -> DatasetManifest:
        if not _DATASET_ID.match(dataset_id):
            raise DatasetNotFound(f"No data set {dataset_id!r}.")
        try:
            with _storage_errors():
                stored = self._backend.read(f"{dataset_id}/{MANIFEST_FILE}")
        except ObjectNotFound as error:
            raise DatasetNotFound(f"No data set {dataset_id!r}.") from error
        return DatasetManifest.from_dict(json.loads(stored.data))

    def list(self, *, offset: int = 0, limit: int = 50) -> tuple[list[DatasetManifest], int]:
        manifests = []
        with _storage_errors():
            folders = self._backend.list_folders("")
        for folder in folders:
            if not _DATASET_ID.match(folder):
                continue
            try:
                manifests.append(self.get(folder))
            except (DatasetNotFound, ValueError, KeyError):
                continue  # an upload still in progress, or one deleted meanwhile
        manifests.sort(key=lambda manifest: (manifest.created_at, manifest.id), reverse=True)
        return manifests[offset : offset + limit], len(manifests)

    def delete(self, dataset_id: str) -> None:
        self.get(dataset_id)
        # The manifest first: the data set vanishes at once, then its files go.
        with _storage_errors():
            self._backend.delete(f"{dataset_id}/{MANIFEST_FILE}")
            for key in self._backend.list_keys(f"{dataset_id}/"):
                self._backend.delete(key)
        logger.info("deleted data set %s", dataset_id)

    def _place(self, staging: Path, dataset_id: str) -> None:
        files_root = staging / FILES_FOLDER
        with _storage_errors():
            for path in sorted(p for p in files_root.rglob("*") if p.is_file()):
                relative = path.relative_to(files_root).as_posix()
                self._backend.create_from_file(f"{dataset_id}/{FILES_FOLDER}/{relative}", path)
            self._backend.create_from_file(f"{dataset_id}/{MANIFEST_FILE}", staging / MANIFEST_FILE)


@contextmanager
def _storage_errors() -> Iterator[None]:
    """The object store's outages as the data set store's own 503."""
    try:
        yield
    except (StorageUnavailable, StorageAccessDenied) as error:
        raise DatasetStorageUnavailable(str(error)) from error
