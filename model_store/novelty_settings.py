"""The false-alarm rate of a version's novelty score, set after publishing.

A version's novelty score is calibrated at training for a false-alarm rate (the share of known
recordings flagged as unknown); the fitting backend may choose another later without
retraining, since the version keeps its held-out scores. The chosen rate lives beside the
immutable versions in ``<root>/<name>/novelty_settings.json``, replaced atomically by a
writer holding the model's lock and tied to the version's digest, like the cluster names::

    {"format": 1, "versions": {"3": {"sha256": "<manifest digest>", "false_alarm_rate": 0.1}}}

In an object store the same table is the store's document, replaced by compare-and-swap
(`model_store.version_tables`), as the cluster names are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_store.errors import StoreError
from model_store.records import ModelVersion
from model_store.version_tables import (
    TABLE_FORMAT,
    TableSource,
    read_table,
    table_path,
    update_table,
)

__all__ = [
    "MAX_FALSE_ALARM_RATE",
    "SETTINGS_FILE_NAME",
    "InvalidFalseAlarmRate",
    "SettingsSource",
    "edited_false_alarm_rate",
    "set_false_alarm_rate",
    "settings_path",
]

SETTINGS_FILE_NAME = "novelty_settings.json"
MAX_FALSE_ALARM_RATE = 0.5  # the same bound as uvac.novelty, which this package cannot import
_WHAT = "novelty settings"

SettingsSource = TableSource


class InvalidFalseAlarmRate(StoreError, ValueError):
    status = 422
    slug = "invalid-false-alarm-rate"
    title = "Invalid false-alarm rate"


def settings_path(store_root: Path, name: str) -> Path:
    return table_path(store_root, name, SETTINGS_FILE_NAME)


def edited_false_alarm_rate(source: SettingsSource, version: ModelVersion) -> float | None:
    """The rate set on ``version`` (None when never set: the model's own applies)."""
    table = read_table(source, SETTINGS_FILE_NAME, name=version.name, what=_WHAT)
    entry = table["versions"].get(str(version.version))
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

    def edit(table: dict[str, Any]) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "versions": {**table["versions"], str(version.version): entry},
        }

    update_table(
        source,
        SETTINGS_FILE_NAME,
        name=version.name,
        what=_WHAT,
        change=edit,
        lock_timeout_s=lock_timeout_s,
    )
    return float(rate)
