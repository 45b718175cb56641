"""What a folder holds, to check that a refused request changed nothing on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every path under ``root``: ("dir", 0, "") for folders, ("file", mtime_ns, sha256) for
    files. Folders' own times are left out: making and removing a temporary folder inside
    one leaves nothing behind, yet touches it."""
    state: dict[str, tuple[str, int, str]] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_dir() and not path.is_symlink():
            state[relative] = ("dir", 0, "")
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            state[relative] = ("file", path.stat().st_mtime_ns, digest)
    return state
