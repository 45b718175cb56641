"""Version manifests: the SHA-256 and size of every file in a version folder.

``MANIFEST.json`` lists every file the publisher wrote (recursively, as relative POSIX paths)
and the SHA-256 of the publisher's metadata document. The version's identity is the SHA-256 of
the manifest's bytes, so one digest pins every byte of the weights, the model description and
the metadata, and nothing about where or when it was published: the same model published
into two stores (under another version number, at another time) has the same identity.
(Format 1 manifests, written before, also listed the store's ``metadata.json``, whose name,
number and publish time made every publication's digest different; they still verify.)

The store only ever hashes weight files; it never parses or unpickles them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "FileEntry",
    "hash_file",
    "manifest_document",
    "scan_tree",
    "verify_tree",
]

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_FORMAT = 2
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


def hash_file(path: Path, *, fsync: bool = False) -> FileEntry:
    """SHA-256 and size of one file, optionally flushing it to disk through the same handle."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while chunk := os.read(fd, _CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return FileEntry(sha256=digest.hexdigest(), size=size)


def scan_tree(directory: Path) -> tuple[list[str], list[str], list[str]]:
    """Walk ``directory`` without following links.

    Returns (regular files, sub-folders, anything else such as symlinks or sockets), each as
    sorted relative POSIX paths.
    """
    files: list[str] = []
    folders: list[str] = []
    others: list[str] = []
    for current, dir_names, file_names in os.walk(directory, followlinks=False):
        current_path = Path(current)
        for dir_name in list(dir_names):
            full = current_path / dir_name
            relative = full.relative_to(directory).as_posix()
            if full.is_symlink():
                # os.walk lists a symlink to a folder among the folders; never descend.
                others.append(relative)
                dir_names.remove(dir_name)
            else:
                folders.append(relative)
        for file_name in file_names:
            full = current_path / file_name
            relative = full.relative_to(directory).as_posix()
            mode = os.lstat(full).st_mode
            (files if stat.S_ISREG(mode) else others).append(relative)
    return sorted(files), sorted(folders), sorted(others)


def manifest_document(entries: dict[str, FileEntry], *, metadata_sha256: str) -> dict[str, Any]:
    """The JSON document written to MANIFEST.json: the publisher's files and the digest of
    the publisher's metadata document (`model_store.version_files.metadata_digest`)."""
    return {
        "format": MANIFEST_FORMAT,
        "algorithm": "sha256",
        "files": {
            relative: {"sha256": entry.sha256, "size": entry.size}
            for relative, entry in sorted(entries.items())
        },
        "metadata": {"sha256": metadata_sha256},
    }


def verify_tree(
    directory: Path, manifest: Any, *, unlisted: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Recompute every checksum; return ``{relative path: problem}`` for each bad file.

    ``unlisted``: files the manifest need not name (the store's own, checked otherwise).
    Problems: "missing", "unexpected file", "not a regular file", "size differs",
    "sha256 differs", or "malformed manifest" (keyed by MANIFEST.json). Empty means intact.
    """
    expected = _expected_files(manifest)
    if expected is None:
        return {MANIFEST_NAME: "malformed manifest"}
    all_files, _folders, others = scan_tree(directory)
    skipped = {MANIFEST_NAME} | (set(unlisted) - set(expected))
    files = [relative for relative in all_files if relative not in skipped]
    problems: dict[str, str] = {relative: "not a regular file" for relative in others}
    present = set(files)
    for relative in sorted(set(expected) - present - set(others)):
        problems[relative] = "missing"
    for relative in sorted(present - set(expected)):
        problems[relative] = "unexpected file"
    for relative in sorted(present & set(expected)):
        actual = hash_file(directory / relative)
        wanted_sha256, wanted_size = expected[relative]
        if actual.size != wanted_size:
            problems[relative] = "size differs"
        elif actual.sha256 != wanted_sha256:
            problems[relative] = "sha256 differs"
    return dict(sorted(problems.items()))


def _expected_files(manifest: Any) -> dict[str, tuple[str, int]] | None:
    if not isinstance(manifest, dict) or manifest.get("algorithm") != "sha256":
        return None
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        return None
    expected: dict[str, tuple[str, int]] = {}
    for relative, entry in listed.items():
        if not isinstance(entry, dict):
            return None
        sha256, size = entry.get("sha256"), entry.get("size")
        if not isinstance(sha256, str) or not isinstance(size, int):
            return None
        expected[relative] = (sha256, size)
    return expected
