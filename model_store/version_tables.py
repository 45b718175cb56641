"""Small JSON tables kept beside a model's immutable versions, keyed by version number.

The cluster names (`model_store.cluster_names`) and the novelty false-alarm settings
(`model_store.novelty_settings`) are such tables::

    {"format": 1, "versions": {"3": {"sha256": "<manifest digest>", ...}}}

In a folder store a table is ``<root>/<name>/<file>``, replaced atomically by a writer holding
the model's lock; in an object store it is the store's document beside the model, replaced by
compare-and-swap (`ObjectModelStore.update_document`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from model_store.errors import Corrupted
from model_store.fsutil import atomic_write_json, read_json
from model_store.locking import model_lock
from model_store.object_store import ObjectModelStore
from model_store.store import ModelStore

__all__ = ["TABLE_FORMAT", "TableSource", "read_table", "table_path", "update_table"]

TABLE_FORMAT = 1

# Where the tables live: a folder store (or its root) or an object store.
TableSource = Path | ModelStore | ObjectModelStore


def table_path(store_root: Path, name: str, file_name: str) -> Path:
    """A folder store's table ``file_name`` of model ``name``."""
    return store_root / name / file_name


def _empty() -> dict[str, Any]:
    return {"format": TABLE_FORMAT, "versions": {}}


def _checked(document: Any, *, what: str, name: str) -> dict[str, Any]:
    if not isinstance(document, dict) or not isinstance(document.get("versions"), dict):
        raise Corrupted(f"unreadable {what} of {name}: no versions table", ref=name)
    return dict(document)


def _read_file(path: Path, *, what: str, name: str) -> dict[str, Any]:
    if not path.exists():
        return _empty()
    try:
        document = read_json(path)
    except (OSError, ValueError) as error:
        raise Corrupted(f"unreadable {what} {path.name}: {error}", ref=name) from error
    return _checked(document, what=what, name=name)


def read_table(source: TableSource, file_name: str, *, name: str, what: str) -> dict[str, Any]:
    """Model ``name``'s table ``file_name`` (an empty one when there is none); ``what`` names
    it in errors."""
    if isinstance(source, ObjectModelStore):
        document = source.read_document(file_name, name=name)
        return _empty() if document is None else _checked(document, what=what, name=name)
    root = source.root if isinstance(source, ModelStore) else source
    return _read_file(table_path(root, name, file_name), what=what, name=name)


def update_table(
    source: TableSource,
    file_name: str,
    *,
    name: str,
    what: str,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    lock_timeout_s: float = 60.0,
) -> None:
    """Replace model ``name``'s table ``file_name`` by ``change(current table)``, without
    losing a concurrent writer's edit."""
    if isinstance(source, ObjectModelStore):
        source.update_document(
            file_name,
            name=name,
            change=lambda current: change(
                _empty() if current is None else _checked(current, what=what, name=name)
            ),
        )
        return
    root = source.root if isinstance(source, ModelStore) else source
    path = table_path(root, name, file_name)
    with model_lock(path.parent, timeout_s=lock_timeout_s, create=False):
        atomic_write_json(path, change(_read_file(path, what=what, name=name)))
