"""The false-alarm rate a loaded version answers ``unknown`` with, kept in step with its file.

Set through ``PUT /v1/models/{name}/versions/{v}/novelty`` (`model_store.novelty_settings`);
re-read when the settings file changes (one ``stat`` per call), so a change shows in
``/v1/cluster`` at once in every API process without reloading the model; with the models in
an object store, re-read at most every `OBJECT_STORE_REFRESH_S` seconds instead (a request
to the store per call would cost more than the answer). Without a setting, the rate the model
was calibrated for at training applies.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from model_store import ModelStore, ModelVersion, ObjectModelStore, StoreError
from model_store.novelty_settings import (
    SettingsSource,
    edited_false_alarm_rate,
    settings_path,
)

__all__ = ["FalseAlarmRateView"]

logger = logging.getLogger(__name__)

OBJECT_STORE_REFRESH_S = 5.0


class FalseAlarmRateView:
    def __init__(self, *, store_root: SettingsSource, version: ModelVersion) -> None:
        self._store_root = store_root
        self._version = version
        self._path = None
        if not isinstance(store_root, ObjectModelStore):
            root = store_root.root if isinstance(store_root, ModelStore) else store_root
            self._path = settings_path(root, version.name)
        self._rate: float | None = None
        self._seen: tuple[int, int, int] | None = None
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def rate(self) -> float | None:
        """The rate set on this version, None when none is (the model's own applies)."""
        if self._path is None:
            return self._rate_from_object_store()
        try:
            stat = os.stat(self._path)
            state: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except OSError:
            state = None
        with self._lock:
            if state != self._seen:
                try:
                    self._rate = (
                        edited_false_alarm_rate(self._store_root, self._version) if state else None
                    )
                    self._seen = state
                except StoreError as error:  # keep the last rate rather than fail a request
                    logger.warning("novelty setting of %s not read: %s", self._version.ref, error)
            return self._rate

    def _rate_from_object_store(self) -> float | None:
        with self._lock:
            if time.monotonic() - self._read_at >= OBJECT_STORE_REFRESH_S:
                try:
                    self._rate = edited_false_alarm_rate(self._store_root, self._version)
                    self._read_at = time.monotonic()
                except StoreError as error:
                    logger.warning("novelty setting of %s not read: %s", self._version.ref, error)
            return self._rate
