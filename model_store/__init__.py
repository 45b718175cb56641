"""Versioned model store: immutable versions, aliases with rollback, checksums.

See ``model_store.store`` for the layout and guarantees and ``model_store.locking`` for the
lock that makes concurrent publishers (processes or hosts sharing a volume) safe.
"""

from model_store.errors import (
    AliasConflict,
    AlreadyExists,
    Corrupted,
    InvalidReference,
    NotFound,
    ReportNotFound,
    StoreBusy,
    StoreError,
    StoreUnavailable,
)
from model_store.object_store import ObjectModelStore
from model_store.opening import AnyModelStore, open_model_store
from model_store.records import ModelSummary, ModelVersion, StagingPath
from model_store.refs import (
    ALIAS_PATTERN,
    LATEST_ALIAS,
    NAME_PATTERN,
    ModelRef,
    parse_ref,
    validate_alias,
    validate_name,
)
from model_store.store import ModelStore

__all__ = [
    "ALIAS_PATTERN",
    "LATEST_ALIAS",
    "NAME_PATTERN",
    "AliasConflict",
    "AlreadyExists",
    "AnyModelStore",
    "Corrupted",
    "InvalidReference",
    "ModelRef",
    "ModelStore",
    "ModelSummary",
    "ModelVersion",
    "NotFound",
    "ObjectModelStore",
    "ReportNotFound",
    "StagingPath",
    "StoreBusy",
    "StoreError",
    "StoreUnavailable",
    "open_model_store",
    "parse_ref",
    "validate_alias",
    "validate_name",
]
