"""The per-model write lock.

Choice: ``filelock.FileLock`` (on Unix: ``flock(2)`` on ``<root>/<name>/.lock``), created
with ``fallback_to_soft=False`` so we never silently degrade to marker-file locks that a
killed process would leave behind.

Why it is safe:
- The kernel drops a flock when its holder dies, SIGKILL included, so a crashed worker
  never leaves a stale lock; the next writer simply acquires it.
- Across processes on one host, flock excludes every other open file description, threads
  of one process included.
- Across hosts sharing the volume: on Linux NFS clients (2.6.12+), flock is implemented
  with POSIX byte-range locks sent to the server, so two containers on two hosts exclude
  each other on NFSv4 (built-in locking with leases) and on NFSv3 with lockd/NLM running.
  Docker named volumes on one host are a local file system, where flock is exact.

Limits (say them out loud):
- Mounts with ``nolock`` or ``local_lock=all|flock`` make the lock host-local: two hosts
  could then publish concurrently. The rename below still refuses to overwrite an existing
  version (RENAME_NOREPLACE, or an existence check), so the worst case is a failed
  publish, not a lost version.
- On NFSv4, a client cut off from the server longer than its lease (90 s by default) loses
  the lock; the server may hand it to another host.
- SMB/CIFS and some FUSE file systems implement flock locally only; do not share a store
  across hosts on those.

Only writers lock (publish, promote, rollback, delete, retention, reports). Readers need no
lock: every change becomes visible through one atomic rename.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from model_store.errors import StoreBusy

__all__ = ["LOCK_FILE_NAME", "model_lock"]

logger = logging.getLogger(__name__)

LOCK_FILE_NAME = ".lock"


@contextmanager
def model_lock(model_dir: Path, *, timeout_s: float, create: bool = True) -> Iterator[None]:
    """Hold the exclusive write lock of one model folder, creating the folder when ``create``
    (publishing a new model); otherwise the folder must exist."""
    if create:
        model_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(model_dir / LOCK_FILE_NAME, timeout=timeout_s, fallback_to_soft=False)
    try:
        lock.acquire()
    except Timeout as error:
        raise StoreBusy(
            f"could not lock {model_dir.name!r} within {timeout_s:g} s; another writer holds it"
        ) from error
    logger.debug("locked %s", model_dir)
    try:
        yield
    finally:
        lock.release()
        logger.debug("unlocked %s", model_dir)
