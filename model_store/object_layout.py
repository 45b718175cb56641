"""Where a model store keeps things in an object store (S3 or a folder used as one).

::

    <name>/versions/v<N>/MANIFEST.json   the version's record: written last, create-only; it
                                         holds the manifest (whose SHA-256 is the version's
                                         identity, as on disk) and metadata.json
    <name>/blobs/<sha256>                every file of every version, stored by content,
                                         written (again) by each publish before its record;
                                         removed once no record lists it (`collect_garbage`)
    <name>/aliases.json                  alias targets, rollback stacks, history (the same
                                         document as on disk), moved by compare-and-swap
    <name>/cluster_names.json            edited cluster names, by compare-and-swap
    <name>/reports/v<N>/CURRENT.json     which report of version N is current (CAS)
    <name>/reports/v<N>/<id>/<file>      one written report, create-only
"""

from __future__ import annotations

import re

__all__ = [
    "aliases_key",
    "blob_key",
    "blobs_prefix",
    "manifest_key",
    "names_key",
    "report_file_key",
    "report_pointer_key",
    "reports_prefix",
    "version_number",
    "versions_prefix",
]

_VERSION_FOLDER = re.compile(r"v([1-9][0-9]*)")


def versions_prefix(name: str) -> str:
    return f"{name}/versions/"


def manifest_key(name: str, number: int) -> str:
    return f"{name}/versions/v{number}/MANIFEST.json"


def blobs_prefix(name: str) -> str:
    return f"{name}/blobs/"


def blob_key(name: str, sha256: str) -> str:
    return blobs_prefix(name) + sha256


def reports_prefix(name: str, number: int) -> str:
    return f"{name}/reports/v{number}/"


def aliases_key(name: str) -> str:
    return f"{name}/aliases.json"


def names_key(name: str) -> str:
    return f"{name}/cluster_names.json"


def report_pointer_key(name: str, number: int) -> str:
    return f"{name}/reports/v{number}/CURRENT.json"


def report_file_key(name: str, number: int, report_id: str, relative: str) -> str:
    return f"{name}/reports/v{number}/{report_id}/{relative}"


def version_number(folder: str) -> int | None:
    """N of a ``vN`` folder name, None for anything else."""
    match = _VERSION_FOLDER.fullmatch(folder)
    return int(match.group(1)) if match else None
