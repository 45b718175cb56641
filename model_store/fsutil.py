"""Durable file-system primitives: fsync, atomic JSON replace, rename that never replaces.

Everything the store makes visible goes through one of these, so a crash (or SIGKILL) at
any instant leaves either the old state or the new one on disk, never a half-written file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_json",
    "canonical_json",
    "fsync_dir",
    "read_json",
    "remove_tree",
    "rename_no_replace",
]

logger = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def canonical_json(document: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no NaN), so digests of a document are stable."""
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def read_json(path: Path) -> Any:
    """Read one JSON document; the store never reads anything else (no pickle anywhere)."""
    with path.open("rb") as stream:
        return json.loads(stream.read().decode("utf-8"))


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries, so a rename or create inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as error:
        # Some network file systems refuse fsync on directories; their renames are
        # synchronous on the server anyway.
        if error.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def write_bytes_durably(path: Path, data: bytes) -> None:
    """Create ``path`` (which must not exist) with ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, document: Any) -> None:
    """Replace ``path`` with ``document`` atomically: write a sibling temp file, fsync, rename."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write_bytes_durably(temporary, canonical_json(document))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _load_renameat2() -> Any | None:
    library_name = ctypes.util.find_library("c")
    if library_name is None:
        return None
    try:
        libc = ctypes.CDLL(library_name, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2() if hasattr(os, "O_DIRECTORY") else None


def rename_no_replace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, raising FileExistsError if ``target`` exists.

    A plain rename(2) of a directory silently replaces an *empty* target directory, which
    would let a stray empty ``vN`` folder be overwritten. Linux's renameat2 with
    RENAME_NOREPLACE refuses atomically; where the file system does not support the flag
    (some NFS servers, older kernels) we fall back to an existence check, which is safe
    because callers hold the per-model lock.
    """
    if _renameat2 is not None:
        result = _renameat2(
            _AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE
        )
        if result == 0:
            return
        error_number = ctypes.get_errno()
        if error_number == errno.EEXIST:
            raise FileExistsError(error_number, os.strerror(error_number), str(target))
        if error_number not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(error_number, os.strerror(error_number), str(source))
        logger.debug("renameat2(RENAME_NOREPLACE) unsupported here; falling back to a check")
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    os.rename(source, target)


def remove_tree(path: Path) -> None:
    """Delete a folder tree, tolerating it being gone already."""
    shutil.rmtree(path, onerror=_ignore_missing)


def _ignore_missing(function: Any, path: str, exc_info: Any) -> None:
    # Python 3.11's rmtree hook (``onexc`` arrives in 3.12).
    error = exc_info[1]
    if isinstance(error, FileNotFoundError):
        return
    raise error
