"""Editable cluster names (program labels) of published versions, beside the immutable ones.

A published version is immutable and checksummed, but the fitting backend names its clusters
after the fact ("Rain", "Speech in noise"). The names a user sets live in one small JSON
file per model, ``<root>/<name>/cluster_names.json``, replaced atomically (temp file, fsync,
rename) by a writer holding the model's lock; readers just read it::

    {"format": 1,
     "versions": {"3": {"sha256": "<the version's manifest digest>",
                        "names": {"0": "Rain", "4": "Speech in noise", "6": null}}}}

An entry is tied to its version's digest, so a version number reused after a delete never
inherits the names of the version it replaces. A version's names are its metadata's
``cluster_names`` (set at publishing: the bundled model's, or those carried over from the
earlier version) overlaid with the edited ones (`cluster_names`). An edited ``null`` clears a
name: the cluster has none, whatever the version was published with
(`set_cluster_name(..., name=None)`).

Names are 1 to `MAX_NAME_LENGTH` characters of letters, digits, spaces and ``- _ . , ' ( ) &
/ + #``, starting with a letter or digit; anything else is `InvalidClusterName` (422).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Mapping
from typing import Any

from model_store.errors import StoreError
from model_store.records import ModelVersion
from model_store.version_tables import (
    TABLE_FORMAT,
    TableSource,
    read_table,
    update_table,
)

# Where the names live: a folder store's root (or the store), or an object store, where the
# file is replaced by compare-and-swap instead of under the folder's lock.
NamesSource = TableSource

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_NAME_LENGTH",
    "NAMES_FILE_NAME",
    "InvalidClusterName",
    "UnknownCluster",
    "apply_edits",
    "cluster_names",
    "current_cluster_names",
    "edited_names",
    "metadata_names",
    "names_document",
    "published_cluster_names",
    "set_cluster_name",
]

NAMES_FILE_NAME = "cluster_names.json"
MAX_NAME_LENGTH = 64
# Beside letters, marks and digits of any script (Hindi, Bengali and Tamil vowel signs are
# marks), these punctuation characters; never controls, format characters (bidi overrides)
# or other symbols.
_NAME_PUNCTUATION = frozenset(" .,'()&/+#-_")


class InvalidClusterName(StoreError, ValueError):
    """A cluster name that is empty, too long or holds characters outside the allowed set."""

    status = 422
    slug = "invalid-cluster-name"
    title = "Invalid cluster name"


class UnknownCluster(StoreError, ValueError):
    """A cluster number the version does not have."""

    status = 422
    slug = "unknown-cluster"
    title = "No such cluster"


def validate_cluster_name(name: str) -> str:
    """The name in NFC with surrounding spaces removed, or `InvalidClusterName`."""
    stripped = unicodedata.normalize("NFC", name).strip()
    if not 1 <= len(stripped) <= MAX_NAME_LENGTH:
        raise InvalidClusterName(
            f"a cluster name has 1 to {MAX_NAME_LENGTH} characters, got {len(stripped)}"
        )
    if not _is_name(stripped):
        raise InvalidClusterName(
            "a cluster name starts with a letter or digit and holds only letters, digits, "
            "spaces and - _ . , ' ( ) & / + #"
        )
    return stripped


def _is_name(text: str) -> bool:
    if unicodedata.category(text[0])[0] not in "LN":
        return False
    return all(unicodedata.category(char)[0] in "LMN" or char in _NAME_PUNCTUATION for char in text)


def names_document(source: NamesSource, name: str) -> dict[str, Any]:
    """The names file of model ``name`` (an empty table when there is none)."""
    return read_table(source, NAMES_FILE_NAME, name=name, what="cluster names")


def metadata_names(metadata: Mapping[str, Any], *, n_clusters: int) -> dict[str, str]:
    """The names a version was published with: a list of K names or a {"k": name} mapping."""
    names = metadata.get("cluster_names")
    if isinstance(names, list | tuple):
        pairs = {str(index): value for index, value in enumerate(names)}
    elif isinstance(names, Mapping):
        pairs = {str(key): value for key, value in names.items()}
    else:
        return {}
    return {
        key: value
        for key, value in pairs.items()
        if isinstance(value, str) and key.isdigit() and int(key) < n_clusters
    }


def published_cluster_names(
    version: ModelVersion, *, n_clusters: int, model_info: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The names ``version`` was published with: its metadata's, else those in the model
    file's ``model_info`` (a model trained with names, such as the bundled one)."""
    published = metadata_names(version.metadata, n_clusters=n_clusters)
    if not published and model_info:
        published = metadata_names(model_info, n_clusters=n_clusters)
    return published


def edited_names(store_root: NamesSource, version: ModelVersion) -> dict[str, str | None]:
    """The names set on ``version`` through `set_cluster_name` (none when never edited);
    None for a name that was cleared."""
    document = names_document(store_root, version.name)
    entry = document["versions"].get(str(version.version))
    if not isinstance(entry, dict) or entry.get("sha256") != version.sha256:
        return {}
    names = entry.get("names")
    if not isinstance(names, dict):
        return {}
    return {str(k): None if v is None else str(v) for k, v in names.items()}


def apply_edits(published: Mapping[str, str], edited: Mapping[str, str | None]) -> dict[str, str]:
    """Published names overlaid with edited ones; a cleared name (None) removes the name."""
    merged: dict[str, str | None] = {**published, **edited}
    return {key: value for key, value in merged.items() if value is not None}


def cluster_names(
    store_root: NamesSource, version: ModelVersion, *, n_clusters: int
) -> dict[str, str]:
    """Every named cluster of ``version``: published names overlaid with edited ones."""
    return apply_edits(
        metadata_names(version.metadata, n_clusters=n_clusters), edited_names(store_root, version)
    )


def current_cluster_names(
    store_root: NamesSource,
    version: ModelVersion,
    *,
    n_clusters: int,
    model_info: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The names to show now: the published ones (the version's metadata, else those in the
    model file's ``model_info``) overlaid with the edited ones. A names file that cannot be
    read leaves the published names (logged): showing names never fails a download or a
    report, as it never fails `/v1/cluster`."""
    published = published_cluster_names(version, n_clusters=n_clusters, model_info=model_info)
    edited: dict[str, str | None]
    try:
        edited = edited_names(store_root, version)
    except StoreError as error:
        logger.warning("edited cluster names of %s not read: %s", version.ref, error)
        edited = {}
    return apply_edits(published, edited)


def set_cluster_name(
    store_root: NamesSource,
    version: ModelVersion,
    *,
    cluster: int,
    name: str | None,
    n_clusters: int,
    lock_timeout_s: float = 60.0,
) -> dict[str, str]:
    """Name cluster ``cluster`` of ``version`` (None clears its name); returns the version's
    names after the edit."""
    if not 0 <= cluster < n_clusters:
        raise UnknownCluster(
            f"{version.ref} has clusters 0 to {n_clusters - 1}; there is no cluster {cluster}"
        )
    clean = None if name is None else validate_cluster_name(name)

    def edit(document: dict[str, Any]) -> dict[str, Any]:
        versions = document["versions"]
        entry = versions.get(str(version.version))
        if not isinstance(entry, dict) or entry.get("sha256") != version.sha256:
            entry = {"sha256": version.sha256, "names": {}}
        entry["names"] = {**entry.get("names", {}), str(cluster): clean}
        versions[str(version.version)] = entry
        return {"format": TABLE_FORMAT, "versions": versions}

    update_table(
        store_root,
        NAMES_FILE_NAME,
        name=version.name,
        what="cluster names",
        change=edit,
        lock_timeout_s=lock_timeout_s,
    )
    return cluster_names(store_root, version, n_clusters=n_clusters)
