"""The two files the store writes into every version: ``metadata.json`` and ``MANIFEST.json``.

`seal_version` hashes and flushes a staged folder and writes them; `read_version` reads them
back into a `ModelVersion` and refuses a folder whose files do not describe it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_store.errors import Corrupted, NotFound, StoreError
from model_store.fsutil import canonical_json, fsync_dir, read_json, write_bytes_durably
from model_store.manifest import (
    MANIFEST_NAME,
    FileEntry,
    hash_file,
    manifest_document,
    scan_tree,
    verify_tree,
)
from model_store.records import ModelVersion

__all__ = [
    "METADATA_NAME",
    "hash_staged_files",
    "json_document",
    "metadata_digest",
    "read_version",
    "seal_version",
    "verify_files",
    "verify_version",
]

METADATA_NAME = "metadata.json"
METADATA_FORMAT = 1


def json_document(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A deep JSON copy of ``metadata``; refuses what JSON cannot represent (NaN, objects)."""
    try:
        document = json.loads(json.dumps(dict(metadata), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"metadata must be a JSON document: {error}") from error
    return document


def hash_staged_files(staging: Path) -> dict[str, FileEntry]:
    """Hash and flush every file of a staged folder (the slow part; no lock needed)."""
    files, folders, others = scan_tree(staging)
    if others:
        raise StoreError(f"publish refused: only regular files may be published, not {others}")
    reserved = sorted({METADATA_NAME, MANIFEST_NAME} & set(files))
    if reserved:
        raise StoreError(f"publish refused: {reserved} are written by the store")
    entries = {relative: hash_file(staging / relative, fsync=True) for relative in files}
    for folder in folders:
        fsync_dir(staging / folder)
    return entries


def metadata_digest(metadata: Mapping[str, Any]) -> str:
    """SHA-256 of the publisher's metadata document in canonical JSON: what the manifest
    pins of ``metadata.json`` (its name, number and publish time describe the publication,
    not the model)."""
    return hashlib.sha256(canonical_json(dict(metadata))).hexdigest()


def seal_version(
    staging: Path,
    entries: dict[str, FileEntry],
    *,
    name: str,
    number: int,
    created_at: str,
    metadata: dict[str, Any],
) -> None:
    """Write ``metadata.json`` and ``MANIFEST.json`` (every file's SHA-256 and the metadata
    document's) into ``staging``."""
    document = {
        "format": METADATA_FORMAT,
        "name": name,
        "version": number,
        "ref": f"{name}:v{number}",
        "created_at": created_at,
        "metadata": metadata,
    }
    write_bytes_durably(staging / METADATA_NAME, canonical_json(document))
    manifest = manifest_document(entries, metadata_sha256=metadata_digest(metadata))
    write_bytes_durably(staging / MANIFEST_NAME, canonical_json(manifest))
    fsync_dir(staging)


def verify_version(version: ModelVersion, manifest: Any) -> dict[str, str]:
    """Every file against the manifest, and the metadata document against its digest;
    ``{relative path: problem}``, empty when intact."""
    return verify_files(version.path, manifest, version.metadata)


def verify_files(path: Path, manifest: Any, metadata: Any) -> dict[str, str]:
    """`verify_version` of the folder ``path`` whose metadata document is ``metadata``."""
    pinned = manifest.get("metadata") if isinstance(manifest, dict) else None
    if not isinstance(pinned, dict):  # format 1: metadata.json is one of the listed files
        return verify_tree(path, manifest)
    problems = verify_tree(path, manifest, unlisted=frozenset({METADATA_NAME}))
    if not isinstance(metadata, dict) or pinned.get("sha256") != metadata_digest(metadata):
        problems[METADATA_NAME] = "sha256 differs"
    return dict(sorted(problems.items()))


def read_version(
    path: Path, *, name: str, number: int, aliases: list[str]
) -> tuple[ModelVersion, Any]:
    """The ModelVersion of the folder ``path``; returns its parsed manifest too."""
    ref = f"{name}:v{number}"
    try:
        manifest_bytes = (path / MANIFEST_NAME).read_bytes()
        manifest = json.loads(manifest_bytes.decode("utf-8"))
        document = read_json(path / METADATA_NAME)
    except FileNotFoundError as error:
        if not path.is_dir():
            raise NotFound(f"{ref} not found") from error
        raise Corrupted(
            f"{ref} lacks {Path(error.filename).name}",
            ref=ref,
            bad_files=[Path(error.filename).name],
        ) from error
    except (OSError, ValueError) as error:
        raise Corrupted(
            f"{ref} has an unreadable manifest or metadata: {error}", ref=ref
        ) from error
    if (
        not isinstance(document, dict)
        or document.get("name") != name
        or document.get("version") != number
        or not isinstance(document.get("metadata"), dict)
    ):
        raise Corrupted(
            f"{ref}: metadata.json does not describe this version",
            ref=ref,
            bad_files=[METADATA_NAME],
        )
    version = ModelVersion(
        name=name,
        version=number,
        ref=ref,
        path=path,
        sha256=hashlib.sha256(manifest_bytes).hexdigest(),
        metadata=document["metadata"],
        created_at=str(document.get("created_at", "")),
        aliases=aliases,
    )
    return version, manifest
