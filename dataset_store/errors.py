"""The data set store's exceptions, one hierarchy.

Like `uvac.errors`, every class carries the HTTP status the API maps it to (``status``), the
suffix of its problem type (``slug``) and a short title (``title``); the store never speaks
HTTP itself.

::

    DatasetStoreError (500, "internal")
     +-- DatasetNotFound (404, "dataset-not-found")
     +-- ArchiveRejected (400, "archive-rejected")         unsafe or unusable upload
          +-- ArchiveTooLarge (413, "archive-too-large")   unpacked size or file count over limits
          +-- UnsupportedArchive (415, "unsupported-archive")  not a zip or tar archive
"""

from __future__ import annotations

__all__ = [
    "ArchiveRejected",
    "ArchiveTooLarge",
    "DatasetNotFound",
    "DatasetStoreError",
    "UnsupportedArchive",
]


class DatasetStoreError(Exception):
    """Base class of every error the data set store raises on purpose."""

    status: int = 500
    slug: str = "internal"
    title: str = "Internal error"


class DatasetNotFound(DatasetStoreError):
    """No data set with that id."""

    status = 404
    slug = "dataset-not-found"
    title = "Data set not found"


class ArchiveRejected(DatasetStoreError):
    """An uploaded archive we refuse as a whole: unsafe paths, links, no usable audio."""

    status = 400
    slug = "archive-rejected"
    title = "Archive rejected"


class ArchiveTooLarge(ArchiveRejected):
    """Unpacking would exceed the size or file-count limits (a zip bomb, or just too big)."""

    status = 413
    slug = "archive-too-large"
    title = "Archive too large"


class UnsupportedArchive(ArchiveRejected):
    """The upload is neither a zip nor a (possibly gzip-compressed) tar archive."""

    status = 415
    slug = "unsupported-archive"
    title = "Unsupported archive format"
