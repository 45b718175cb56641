"""The cluster names a loaded model answers with, kept in step with the names file.

A version's names are published with it (metadata ``cluster_names``) and edited afterwards
through ``PUT /v1/models/{name}/versions/{v}/clusters/{k}`` (`model_store.cluster_names`).
`ClusterNamesView` answers a loaded version's names and re-reads the edited ones when the
names file changes (one ``stat`` per call), so an edit shows in ``/v1/cluster`` at once, in
every API process, without reloading the model. On an object store, where a ``stat`` is a
request, the edited names are read again at most every ``refresh_s`` seconds instead.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_store import ModelVersion, StoreError
from model_store.cluster_names import (
    NAMES_FILE_NAME,
    NamesSource,
    apply_edits,
    edited_names,
    published_cluster_names,
)

__all__ = ["ClusterNamesView"]

logger = logging.getLogger(__name__)


class ClusterNamesView:
    """Names of one loaded version: published names overlaid with the current edits."""

    def __init__(
        self,
        *,
        store_root: NamesSource,
        version: ModelVersion,
        n_clusters: int,
        model_info: Mapping[str, Any] | None = None,
        refresh_s: float = 2.0,
    ) -> None:
        self._store_root = store_root
        self._version = version
        root = getattr(store_root, "root", store_root)
        self._path = root / version.name / NAMES_FILE_NAME if isinstance(root, Path) else None
        self._refresh_s = refresh_s
        self._published = published_cluster_names(
            version, n_clusters=n_clusters, model_info=model_info
        )
        self._edited: dict[str, str | None] = {}
        self._seen: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    def _file_state(self) -> tuple[int, int, int] | None:
        if self._path is None:  # an object store: a new state every refresh_s seconds
            return (int(time.monotonic() // self._refresh_s), 0, 0)
        try:
            stat = os.stat(self._path)
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def names(self) -> dict[str, str]:
        """Cluster number (as a string) -> name, for every named cluster."""
        state = self._file_state()
        with self._lock:
            if state != self._seen:
                try:
                    self._edited = edited_names(self._store_root, self._version) if state else {}
                    self._seen = state
                except StoreError as error:  # keep the last names rather than fail a request
                    logger.warning("cluster names of %s not read: %s", self._version.ref, error)
            return apply_edits(self._published, self._edited)

    def name(self, number: int) -> str | None:
        return self.names().get(str(number))
