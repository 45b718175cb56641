"""The model store's exceptions, one hierarchy.

Every class carries the HTTP status the API maps it to (``status``), the suffix of its
problem type (``slug``) and a short human title (``title``), so the API translates them in
exactly one place by walking the class hierarchy. The store itself never speaks HTTP.

::

    StoreError (500, "model-store-error")
     +-- NotFound (404, "model-not-found")               no such model, version or alias
     +-- AlreadyExists (409, "model-already-exists")     a version folder is already taken
     +-- Corrupted (422, "model-corrupted")              files do not match the manifest
     +-- AliasConflict (409, "alias-conflict")           delete of an aliased version,
     |                                                   rollback with nothing to go back to
     +-- InvalidReference (422, "invalid-model-reference")  a malformed name, ref or alias
     +-- StoreBusy (503, "model-store-busy")             the per-model lock was not acquired
          +-- StoreUnavailable (503, "model-store-unavailable")  the object store did not
                                                         answer or refused the credentials

``Corrupted`` is 422 when a client asks for a broken version; the API answers 503 when its
own serving model turns out corrupted (that is the service's fault, not the request's).
``InvalidReference`` is also a ``ValueError`` and ``NotFound`` a ``LookupError`` so generic
callers can catch them without importing this module.
"""

from __future__ import annotations

__all__ = [
    "AliasConflict",
    "AlreadyExists",
    "Corrupted",
    "InvalidReference",
    "NotFound",
    "StoreBusy",
    "StoreError",
    "StoreUnavailable",
]


class StoreError(Exception):
    """Base class of every error the model store raises on purpose."""

    status: int = 500
    slug: str = "model-store-error"
    title: str = "Model store error"


class NotFound(StoreError, LookupError):
    """The model, version or alias does not exist."""

    status = 404
    slug = "model-not-found"
    title = "Model not found"


class ReportNotFound(NotFound):
    """The version exists but has no evaluation report (or not the file asked for)."""

    slug = "report-not-found"
    title = "Report not found"


class AlreadyExists(StoreError):
    """The target of a write is already taken (a version folder exists)."""

    status = 409
    slug = "model-already-exists"
    title = "Model version already exists"


class Corrupted(StoreError):
    """A version's files do not match its manifest (or the manifest itself is unreadable).

    ``bad_files`` lists the relative paths that are missing, unexpected or whose SHA-256
    differs; it is empty when the manifest or metadata document itself cannot be read.
    """

    status = 422
    slug = "model-corrupted"
    title = "Model version is corrupted"

    def __init__(self, message: str, *, ref: str, bad_files: list[str] | None = None) -> None:
        super().__init__(message)
        self.ref = ref
        self.bad_files: list[str] = list(bad_files or [])


class AliasConflict(StoreError):
    """An alias forbids the operation (deleting an aliased version, an empty rollback)."""

    status = 409
    slug = "alias-conflict"
    title = "Alias conflict"


class InvalidReference(StoreError, ValueError):
    """A model name, version reference or alias is malformed (also guards path traversal)."""

    status = 422
    slug = "invalid-model-reference"
    title = "Invalid model reference"


class StoreBusy(StoreError):
    """The per-model lock could not be acquired in time (another writer holds it)."""

    status = 503
    slug = "model-store-busy"
    title = "Model store busy"


class StoreUnavailable(StoreBusy):
    """The object store behind the model store did not answer, or refused the credentials.

    A `StoreBusy`, so the workers retry it like a held lock; the message names the endpoint
    and bucket, never a secret.
    """

    status = 503
    slug = "model-store-unavailable"
    title = "Model store unavailable"
