"""The worker package's exceptions, one hierarchy.

Like `uvac.errors`, every class carries the HTTP status the API maps it to (``status``), the
suffix of its problem type (``slug``) and a short title (``title``); the worker never speaks
HTTP itself.

::

    WorkerError (500, "internal")
     +-- JobNotFound (404, "job-not-found")
     +-- JobNotCancellable (409, "job-not-cancellable")   finished, failed or already cancelled
"""

from __future__ import annotations

__all__ = [
    "JobNotCancellable",
    "JobNotFound",
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
