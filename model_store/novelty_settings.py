"""The false-alarm rate of a version's novelty score, set after publishing.

A version's novelty score is calibrated at training for a false-alarm rate (the share of known
recordings flagged as unknown); the fitting backend may choose another later without
retraining, since the version keeps its held-out scores. The chosen rate lives beside the
immutable versions in ``<root>/<name>/novelty_settings.json``, replaced atomically by a
writer holding the model's lock and tied to the version's digest, like the cluster names::

    {"format": 1, "versions": {"3": {"sha256": "<manifest digest>", "false_alarm_rate": 0.1}}}

In an object store the same document is kept beside the model's versions and replaced by
compare-and-swap (`ObjectModelStore.update_document`), as the cluster names are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_store.errors import Corrupted, StoreError
from model_store.fsutil import atomic_write_json, read_json
from model_store.locking import model_lock
from model_store.object_store import ObjectModelStore
from model_store.records import ModelVersion
from model_store.store import ModelStore

# Where the settings live: a folder store (or its root) or an object store.
SettingsSource = Path | ModelStore | ObjectModelStore

__all__ = [
    "MAX_FALSE_ALARM_RATE",
    "SETTINGS_FILE_NAME",
    "InvalidFalseAlarmRate",
    "edited_false_alarm_rate",
    "set_false_alarm_rate",
]

SETTINGS_FILE_NAME = "novelty_settings.json"
SETTINGS_FORMAT = 1
MAX_FALSE_ALARM_RATE = 0.5  # the same bound as uvac.novelty, which this package cannot import


class InvalidFalseAlarmRate(StoreError, ValueError):
    status = 422
    slug = "invalid-false-alarm-rate"
    title = "Invalid false-alarm rate"


def settings_path(store_root: Path, name: str) -> Path:
    return store_root / name / SETTINGS_FILE_NAME


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"format": SETTINGS_FORMAT, "versions": {}}
    try:
        document = read_json(path)
        if not isinstance(document.get("versions"), dict):
            raise ValueError("no versions table")
        return dict(document)
    except (OSError, ValueError, AttributeError) as error:
        raise Corrupted(
            f"unreadable novelty settings {path.name}: {error}", ref=path.parent.name
        ) from error


def _document(source: SettingsSource, name: str) -> dict[str, Any]:
    if isinstance(source, ObjectModelStore):
        document = source.read_document(SETTINGS_FILE_NAME, name=name)
        if document is None:
            return {"format": SETTINGS_FORMAT, "versions": {}}
        if not isinstance(document, dict) or not isinstance(document.get("versions"), dict):
            raise Corrupted(f"unreadable novelty settings of {name}", ref=name)
        return document
    root = source.root if isinstance(source, ModelStore) else source
    return _read(settings_path(root, name))


def edited_false_alarm_rate(source: SettingsSource, version: ModelVersion) -> float | None:
    """The rate set on ``version`` (None when never set: the model's own applies)."""
    entry = _document(source, version.name)["versions"].get(str(version.version))
    if not isinstance(entry, dict) or entry.get("sha256") != version.sha256:
        return None
    rate = entry.get("false_alarm_rate")
    return float(rate) if isinstance(rate, int | float) else None


def set_false_alarm_rate(
    source: SettingsSource, version: ModelVersion, *, rate: float, lock_timeout_s: float = 60.0
) -> float:
    """Set ``version``'s false-alarm rate, in (0, `MAX_FALSE_ALARM_RATE`]."""
    if not 0.0 < rate <= MAX_FALSE_ALARM_RATE:
        raise InvalidFalseAlarmRate(
            f"a false-alarm rate is in (0, {MAX_FALSE_ALARM_RATE}], got {rate}"
        )
    entry = {"sha256": version.sha256, "false_alarm_rate": float(rate)}

    def edit(document: dict[str, Any]) -> dict[str, Any]:
        versions = dict(document.get("versions") or {})
        versions[str(version.version)] = entry
        return {"format": SETTINGS_FORMAT, "versions": versions}

    if isinstance(source, ObjectModelStore):
        source.update_document(
            SETTINGS_FILE_NAME,
            name=version.name,
            change=lambda current: edit(current if isinstance(current, dict) else {}),
        )
        return float(rate)
    root = source.root if isinstance(source, ModelStore) else source
    path = settings_path(root, version.name)
    with model_lock(path.parent, timeout_s=lock_timeout_s, create=False):
        atomic_write_json(path, edit(_read(path)))
    return float(rate)
