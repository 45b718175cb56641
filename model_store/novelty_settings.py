"""The false-alarm rate of a version's novelty score, set after publishing.

A version's novelty score is calibrated at training for a false-alarm rate (the share of known
recordings flagged as unknown); the fitting backend may choose another later without
retraining, since the version keeps its held-out scores. The chosen rate lives beside the
immutable versions in ``<root>/<name>/novelty_settings.json``, replaced atomically by a
writer holding the model's lock and tied to the version's digest, like the cluster names::

    {"format": 1, "versions": {"3": {"sha256": "<manifest digest>", "false_alarm_rate": 0.1}}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_store.errors import Corrupted, StoreError
from model_store.fsutil import atomic_write_json, read_json
from model_store.locking import model_lock
from model_store.records import ModelVersion

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


def edited_false_alarm_rate(store_root: Path, version: ModelVersion) -> float | None:
    """The rate set on ``version`` (None when never set: the model's own applies)."""
    entry = _read(settings_path(store_root, version.name))["versions"].get(str(version.version))
    if not isinstance(entry, dict) or entry.get("sha256") != version.sha256:
        return None
    rate = entry.get("false_alarm_rate")
    return float(rate) if isinstance(rate, int | float) else None


def set_false_alarm_rate(
    store_root: Path, version: ModelVersion, *, rate: float, lock_timeout_s: float = 60.0
) -> float:
    """Set ``version``'s false-alarm rate, in (0, `MAX_FALSE_ALARM_RATE`]."""
    if not 0.0 < rate <= MAX_FALSE_ALARM_RATE:
        raise InvalidFalseAlarmRate(
            f"a false-alarm rate is in (0, {MAX_FALSE_ALARM_RATE}], got {rate}"
        )
    path = settings_path(store_root, version.name)
    with model_lock(path.parent, timeout_s=lock_timeout_s, create=False):
        document = _read(path)
        document["versions"][str(version.version)] = {
            "sha256": version.sha256,
            "false_alarm_rate": float(rate),
        }
        atomic_write_json(path, {"format": SETTINGS_FORMAT, "versions": document["versions"]})
    return float(rate)
