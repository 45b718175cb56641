"""The worker package's exceptions, one hierarchy.

Like `uvac.errors`, every class carries the HTTP status the API maps it to (``status``), the
suffix of its problem type (``slug``) and a short title (``title``); the worker never speaks
HTTP itself.

::

    WorkerError (500, "internal")
     +-- JobNotFound (404, "job-not-found")
     +-- JobNotCancellable (409, "job-not-cancellable")   finished, failed or already cancelled
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
    "JobNotCancellable",
    "JobNotFound",
    "UnsupportedArchive",
    "WorkerError",
]


class WorkerError(Exception):
    """Base class of every error the worker package raises on purpose."""

    status: int = 500
    slug: str = "internal"
    title: str = "Internal error"


class JobNotFound(WorkerError):
    """No job with that id (never existed, or its result expired)."""

    status = 404
    slug = "job-not-found"
    title = "Job not found"


class JobNotCancellable(WorkerError):
    """The job already ended (finished, failed, stopped or cancelled)."""

    status = 409
    slug = "job-not-cancellable"
    title = "Job cannot be cancelled"


class DatasetNotFound(WorkerError):
    """No data set with that id."""

    status = 404
    slug = "dataset-not-found"
    title = "Data set not found"


class ArchiveRejected(WorkerError):
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
