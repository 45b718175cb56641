"""Where a model store keeps things on disk, and its scratch area (``.staging``).

Every rename the store does stays inside one root, so on one file system: temporaries are
made under ``.staging`` and renamed into place, and a folder being deleted is first renamed
into ``.staging`` (readers never see it half gone).
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from pathlib import Path

from model_store.aliases import ALIASES_FILE_NAME
from model_store.fsutil import fsync_dir, remove_tree

__all__ = ["DEFAULT_STALE_STAGING_S", "StoreLayout"]

logger = logging.getLogger(__name__)

STAGING_DIR_NAME = ".staging"
VERSIONS_DIR_NAME = "versions"
REPORTS_DIR_NAME = "reports"
DEFAULT_STALE_STAGING_S = 3600.0

_VERSION_DIR_RE = re.compile(r"v([1-9][0-9]*)")


class StoreLayout:
    """The paths of one store root; nothing here takes a lock."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def model_dir(self, name: str) -> Path:
        return self.root / name

    def versions_dir(self, name: str) -> Path:
        return self.root / name / VERSIONS_DIR_NAME

    def version_dir(self, name: str, number: int) -> Path:
        return self.versions_dir(name) / f"v{number}"

    def reports_dir(self, name: str) -> Path:
        return self.root / name / REPORTS_DIR_NAME

    def report_dir(self, name: str, number: int) -> Path:
        return self.reports_dir(name) / f"v{number}"

    def aliases_path(self, name: str) -> Path:
        return self.root / name / ALIASES_FILE_NAME

    def version_numbers(self, name: str) -> list[int]:
        """Published versions (folders named vN), ascending."""
        versions_dir = self.versions_dir(name)
        if not versions_dir.is_dir():
            return []
        numbers = []
        for entry in versions_dir.iterdir():
            match = _VERSION_DIR_RE.fullmatch(entry.name)
            if match is not None and entry.is_dir():
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def next_version_number(self, name: str) -> int:
        """max(any vN entry, even a stray empty one) + 1; call under the model's lock."""
        taken = [
            int(match.group(1))
            for entry in os.listdir(self.versions_dir(name))
            if (match := _VERSION_DIR_RE.fullmatch(entry)) is not None
        ]
        return max(taken, default=0) + 1

    def new_staging_dir(self) -> Path:
        staging_root = self.root / STAGING_DIR_NAME
        staging_root.mkdir(parents=True, exist_ok=True)
        path = staging_root / uuid.uuid4().hex
        path.mkdir()
        return path

    def discard(self, path: Path) -> None:
        """Make ``path`` disappear at once (a rename into ``.staging``), then delete it."""
        trash = self.root / STAGING_DIR_NAME / f"trash-{uuid.uuid4().hex}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, trash)
        fsync_dir(path.parent)
        remove_tree(trash)

    def cleanup_staging(self, *, max_age_s: float) -> int:
        """Remove temporaries under ``.staging`` untouched for ``max_age_s``; return how many.

        Leftovers come from writers killed mid-publish. An active publish touches its folder
        as it writes, so only truly abandoned ones reach the age limit.
        """
        staging_root = self.root / STAGING_DIR_NAME
        if not staging_root.is_dir():
            return 0
        removed = 0
        deadline = time.time() - max_age_s
        for entry in staging_root.iterdir():
            try:
                if entry.lstat().st_mtime > deadline:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    remove_tree(entry)
                else:
                    entry.unlink(missing_ok=True)
            except FileNotFoundError:
                continue
            removed += 1
        if removed:
            logger.info("removed %d stale staging entries under %s", removed, staging_root)
        return removed
