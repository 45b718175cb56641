"""A version's evaluation report in the object store: written under a new id, made current
by compare-and-swap of ``reports/v<N>/CURRENT.json``, read through this host's cache."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_store.object_layout import report_file_key, report_pointer_key
from model_store.object_protocol import update_json
from object_storage import ContentCache, ObjectBackend, ObjectNotFound

__all__ = ["fetch_report", "replace_report"]


def replace_report(
    backend: ObjectBackend, name: str, number: int, files: Mapping[str, bytes]
) -> None:
    """Upload ``files`` as a new report, point the version at it, delete the old one."""
    report_id = uuid.uuid4().hex
    for relative, data in files.items():
        backend.create(report_file_key(name, number, report_id, relative), bytes(data))
    document = {"id": report_id, "files": sorted(files)}

    def point(current: Any | None) -> tuple[Any | None, Any]:
        return current, document

    old = update_json(backend, report_pointer_key(name, number), point)
    if isinstance(old, dict):
        for relative in old.get("files", []):
            backend.delete(report_file_key(name, number, old["id"], relative))


def fetch_report(
    backend: ObjectBackend, cache: ContentCache, name: str, number: int
) -> Path | None:
    """The current report's folder on this host, or None when nothing was reported."""
    try:
        pointer = backend.read(report_pointer_key(name, number))
    except ObjectNotFound:
        return None
    document = json.loads(pointer.data)

    def fill(folder: Path) -> None:
        for relative in document["files"]:
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            backend.download(report_file_key(name, number, document["id"], relative), target)

    path, _cached = cache.entry(hashlib.sha256(pointer.data).hexdigest(), fill)
    return path
