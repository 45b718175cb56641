"""The object storage's exceptions, one hierarchy.

::

    StorageError                      base: anything the backend refuses or cannot do
     +-- ObjectNotFound (LookupError) no object under that key
     +-- ObjectExists                 a create-only write found the key taken
     +-- PreconditionFailed           a compare-and-swap lost: the object changed meanwhile
     +-- StorageUnavailable           the server did not answer (connection refused, timeout,
     |                                5xx): may pass, so callers retry or report not ready
     +-- StorageAccessDenied          credentials or permissions refused; the message names
                                      the endpoint and bucket, never the secret

The stores above translate these into their own errors (with HTTP statuses); this package
never speaks HTTP.
"""

from __future__ import annotations

__all__ = [
    "ObjectExists",
    "ObjectNotFound",
    "PreconditionFailed",
    "StorageAccessDenied",
    "StorageError",
    "StorageUnavailable",
]


class StorageError(Exception):
    """Base class of every error a backend raises on purpose."""


class ObjectNotFound(StorageError, LookupError):
    """No object under the key."""


class ObjectExists(StorageError):
    """A create-only write (``If-None-Match: *``) found the key already taken."""


class PreconditionFailed(StorageError):
    """A compare-and-swap (``If-Match``) found another ETag: someone wrote first."""


class StorageUnavailable(StorageError):
    """The storage did not answer; the operation may succeed later."""


class StorageAccessDenied(StorageError):
    """The storage refused the credentials or the permission (names endpoint and bucket)."""
