"""A bounded local cache of immutable content, keyed by its digest.

Each entry is a folder ``<root>/<digest>/`` filled in a temporary folder and renamed into
place, so a reader sees a complete entry or none, and two processes filling the same digest
at once both end with the same complete entry (the second rename loses and its copy is
dropped). Using an entry touches its folder's time; when the cache holds more than
``max_bytes``, the least recently used entries are renamed away and deleted. An entry used
within ``grace_s`` is never evicted, so a reader that was just handed a path can open its
files; an open file stays readable after its entry is deleted. The content is immutable, so
the cache never needs invalidation: what a digest names never changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["ContentCache"]

logger = logging.getLogger(__name__)

_DIGEST = re.compile(r"[0-9a-f]{16,128}")
_WORK_DIR = ".work"


class ContentCache:
    """Folders of immutable content under ``root``, at most about ``max_bytes`` in all."""

    def __init__(self, root: Path | str, *, max_bytes: int, grace_s: float = 60.0) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.grace_s = grace_s

    def entry(self, digest: str, fill: Callable[[Path], None]) -> tuple[Path, bool]:
        """The folder of ``digest``, made by ``fill(empty folder)`` when absent.

        Returns the folder and whether it was already cached. ``fill`` must check what it
        writes (the cache trusts a complete entry).
        """
        if _DIGEST.fullmatch(digest) is None:
            raise ValueError(f"not a hex digest: {digest!r}")
        target = self.root / digest
        if target.is_dir():
            _touch(target)
            return target, True
        work = self.root / _WORK_DIR / uuid.uuid4().hex
        work.mkdir(parents=True)
        try:
            fill(work)
            try:
                os.rename(work, target)
            except OSError:
                if not target.is_dir():  # not a lost race with another filler
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        _touch(target)
        self.evict(keep=digest)
        return target, False

    def evict(self, *, keep: str | None = None) -> list[str]:
        """Delete least recently used entries until the cache fits; returns their digests."""
        if not self.root.is_dir():
            return []
        entries = []
        for folder in self.root.iterdir():
            if _DIGEST.fullmatch(folder.name) is None:
                continue
            try:
                entries.append((folder.stat().st_mtime, folder.name, _size(folder)))
            except FileNotFoundError:
                continue
        total = sum(size for _mtime, _name, size in entries)
        evicted: list[str] = []
        recent = time.time() - self.grace_s
        for mtime, name, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if name == keep or mtime > recent:
                continue
            trash = self.root / _WORK_DIR / f"evict-{uuid.uuid4().hex}"
            try:
                os.rename(self.root / name, trash)
            except FileNotFoundError:
                continue  # another process evicted it
            shutil.rmtree(trash, ignore_errors=True)
            total -= size
            evicted.append(name)
        if evicted:
            logger.info("evicted %d cache entries from %s", len(evicted), self.root)
        return evicted


def _touch(folder: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.utime(folder)


def _size(folder: Path) -> int:
    total = 0
    for current, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += (Path(current) / name).stat().st_size
            except FileNotFoundError:
                continue
    return total
